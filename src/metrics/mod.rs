//! Metric names in one place, and the Prometheus recorder. No caller numbers in labels.

#[cfg(feature = "daemon")]
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// Histogram: INVITE received -> 200 OK sent, seconds.
/// Histogram: seconds from submit to result (queue wait included), per utterance.
pub const ASR_SECONDS: &str = "ivrd_asr_seconds";
/// Gauge: utterances waiting for a worker.
pub const ASR_QUEUE_DEPTH: &str = "ivrd_asr_queue_depth";
/// Buckets for `ASR_SECONDS`: the interesting range is 0.05-2 s.
pub const ASR_BUCKETS: &[f64] = &[
    0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0,
];

pub const CALL_ANSWER_SECONDS: &str = "ivrd_call_answer_seconds";
/// Counter: calls answered after the ring budget.
pub const RING_BUDGET_EXCEEDED_TOTAL: &str = "ivrd_ring_budget_exceeded_total";
/// Counter by `outcome`: how calls ended (see `call::Outcome`, plus `rejected_*` for refusals).
pub const CALLS_TOTAL: &str = "ivrd_calls_total";
/// Gauge: calls in progress.
pub const CALLS_ACTIVE: &str = "ivrd_calls_active";
/// Counter: keys received (RFC 4733 or SIP INFO).
pub const DTMF_TOTAL: &str = "ivrd_dtmf_total";
/// Counter by `direction` (in, out): RTP packets.
pub const RTP_PACKETS_TOTAL: &str = "ivrd_rtp_packets_total";
/// Counter by `reason`: SIP messages refused or dropped before reaching a call.
pub const SIP_MESSAGES_REJECTED_TOTAL: &str = "ivrd_sip_messages_rejected_total";
/// Counter by `flow`, `node`, `intent`: menu choices.
pub const INTENTS_TOTAL: &str = "ivrd_intents_total";
/// Counter by `reason` (key, phrase, failures, unreachable): escalations to a person.
pub const ESCALATIONS_TOTAL: &str = "ivrd_escalations_total";
/// Counter by `result` (accepted, refused): transfers (REFER).
pub const TRANSFERS_TOTAL: &str = "ivrd_transfers_total";
/// Gauge: outages in force now.
pub const OUTAGES_ACTIVE: &str = "ivrd_outages_active";
/// Counter by `outage` (its id): announcements started.
pub const OUTAGE_ANNOUNCEMENTS_TOTAL: &str = "ivrd_outage_announcements_total";
/// Histogram: call answered -> start of the first outage prompt, seconds.
pub const TIME_TO_OUTAGE_NOTICE_SECONDS: &str = "ivrd_time_to_outage_notice_seconds";
/// Counter by `result` (match, no_match, low_confidence, no_speech, overload, escalation,
/// confirm, confirmed, rejected).
pub const ASR_RESULTS_TOTAL: &str = "ivrd_asr_results_total";
/// Histogram: the best intent's confidence (0..1) for each transcript heard in a menu.
pub const ASR_CONFIDENCE: &str = "ivrd_asr_confidence";
/// Buckets for `ASR_CONFIDENCE`: tenths, to read where `min_confidence` cuts.
pub const CONFIDENCE_BUCKETS: &[f64] = &[0.1, 0.2, 0.3, 0.35, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0];
/// Counter by `limit` (calls, rtp_rate, message_size, headers, invite_rate, utterance, ...):
/// a configured limit was hit.
pub const LIMITS_HIT_TOTAL: &str = "ivrd_limits_hit_total";
/// Counter by `state`: `requested` (a request recorded for people to act on: outage and
/// callback-node offers), and for kept places in queues `kept`, `duplicate`, `calling`,
/// `retry`, `connected`, `abandoned`, `given_up`.
pub const CALLBACKS_TOTAL: &str = "ivrd_callbacks_total";
/// Gauge by `queue`: callers waiting in it now.
pub const QUEUE_WAITING: &str = "ivrd_queue_waiting";
/// Histogram by `queue`: how long callers waited until an agent answered.
pub const QUEUE_WAIT_SECONDS: &str = "ivrd_queue_wait_seconds";
/// Counter by `queue`: callers who left (hung up, escalated) before an agent answered.
pub const QUEUE_ABANDONED_TOTAL: &str = "ivrd_queue_abandoned_total";
/// Counter by `queue` and `reason` (timeout, no_agents): callers the queue sent back to the flow.
pub const QUEUE_EXITS_TOTAL: &str = "ivrd_queue_exits_total";
/// Gauge by `state`: agents in each state.
pub const AGENTS: &str = "ivrd_agents";
/// Histogram: |actual - predicted| wait of callers who reached an agent (with a prediction).
pub const WAIT_ESTIMATE_ERROR_SECONDS: &str = "ivrd_wait_estimate_error_seconds";
/// Counter by `result` (answered, no_answer, busy, failed): legs placed to agents.
pub const AGENT_LEGS_TOTAL: &str = "ivrd_agent_legs_total";
/// Histogram by `queue`: survey scores (1-5) after calls with agents.
pub const SURVEY_SCORE: &str = "ivrd_survey_score";
/// Buckets for survey scores: one per score.
#[cfg(feature = "daemon")]
const SCORE_BUCKETS: &[f64] = &[1.0, 2.0, 3.0, 4.0, 5.0];
/// Gauge: calls bridged to an agent now.
pub const BRIDGED_CALLS: &str = "ivrd_bridged_calls";
/// Counter by `cause` (words, meaning, failures): callers the flow found upset,
/// acknowledged and offered a person.
pub const UPSET_CALLERS_TOTAL: &str = "ivrd_upset_callers_total";
/// Histogram by `source` (memory, disk, engine): a text spoken per call, asked -> audio ready.
pub const TTS_RENDER_SECONDS: &str = "ivrd_tts_render_seconds";
/// Buckets for text rendering: a cached text in microseconds, a new one in tens of ms.
#[cfg(feature = "daemon")]
const RENDER_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.15, 0.25, 0.5, 1.0,
    3.0,
];
/// Buckets for queue waits and their estimate errors: seconds to half an hour.
#[cfg(feature = "daemon")]
const WAIT_BUCKETS: &[f64] = &[
    1.0, 5.0, 10.0, 20.0, 30.0, 45.0, 60.0, 90.0, 120.0, 180.0, 300.0, 600.0, 900.0, 1800.0,
];

/// Buckets that resolve answer latency from sub-millisecond to the longest ring budget.
#[cfg(feature = "daemon")]
const ANSWER_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0015, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
    2.0, 4.0, 6.0, 10.0,
];

/// Buckets for how soon callers hear about an outage (the greeting comes first).
#[cfg(feature = "daemon")]
const NOTICE_BUCKETS: &[f64] = &[
    0.25, 0.5, 0.75, 1.0, 1.25, 1.5, 1.75, 2.0, 2.25, 2.5, 2.75, 3.0, 3.25, 3.5, 4.0, 4.5, 5.0,
    7.5, 10.0, 20.0, 60.0,
];

/// Installs the global recorder and returns the handle that renders the scrape text.
#[cfg(feature = "daemon")]
pub fn install() -> Result<PrometheusHandle, metrics_exporter_prometheus::BuildError> {
    let handle = PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Full(CALL_ANSWER_SECONDS.into()), ANSWER_BUCKETS)?
        .set_buckets_for_metric(
            Matcher::Full(TIME_TO_OUTAGE_NOTICE_SECONDS.into()),
            NOTICE_BUCKETS,
        )?
        .set_buckets_for_metric(Matcher::Full(ASR_SECONDS.into()), ASR_BUCKETS)?
        .set_buckets_for_metric(Matcher::Full(ASR_CONFIDENCE.into()), CONFIDENCE_BUCKETS)?
        .set_buckets_for_metric(Matcher::Full(QUEUE_WAIT_SECONDS.into()), WAIT_BUCKETS)?
        .set_buckets_for_metric(Matcher::Full(SURVEY_SCORE.into()), SCORE_BUCKETS)?
        .set_buckets_for_metric(Matcher::Full(TTS_RENDER_SECONDS.into()), RENDER_BUCKETS)?
        .set_buckets_for_metric(
            Matcher::Full(WAIT_ESTIMATE_ERROR_SECONDS.into()),
            WAIT_BUCKETS,
        )?
        .install_recorder()?;
    describe();
    Ok(handle)
}

#[cfg(feature = "daemon")]
fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram, Unit};
    describe_histogram!(
        CALL_ANSWER_SECONDS,
        Unit::Seconds,
        "INVITE received to 200 OK sent"
    );
    describe_counter!(
        RING_BUDGET_EXCEEDED_TOTAL,
        "Calls answered after the ring budget"
    );
    describe_counter!(CALLS_TOTAL, "Calls by outcome");
    describe_gauge!(QUEUE_WAITING, "Callers waiting, by queue");
    describe_histogram!(
        QUEUE_WAIT_SECONDS,
        Unit::Seconds,
        "Wait until an agent answered, by queue"
    );
    describe_counter!(
        QUEUE_ABANDONED_TOTAL,
        "Callers who left a queue before an agent answered"
    );
    describe_counter!(
        QUEUE_EXITS_TOTAL,
        "Callers sent back to the flow by a queue (timeout, no agents)"
    );
    describe_gauge!(AGENTS, "Agents by state");
    describe_histogram!(
        WAIT_ESTIMATE_ERROR_SECONDS,
        Unit::Seconds,
        "How far the announced wait was from the real one"
    );
    describe_counter!(AGENT_LEGS_TOTAL, "Calls placed to agents, by result");
    describe_gauge!(BRIDGED_CALLS, "Calls bridged to an agent now");
    describe_histogram!(SURVEY_SCORE, "Survey scores (1-5) after calls, by queue");
    describe_gauge!(CALLS_ACTIVE, "Calls in progress");
    describe_counter!(DTMF_TOTAL, "Keys received");
    describe_counter!(RTP_PACKETS_TOTAL, "RTP packets by direction");
    describe_counter!(
        SIP_MESSAGES_REJECTED_TOTAL,
        "SIP messages refused or dropped, by reason"
    );
    describe_counter!(INTENTS_TOTAL, "Menu choices by flow, node and intent");
    describe_counter!(ESCALATIONS_TOTAL, "Escalations to a person by reason");
    describe_counter!(TRANSFERS_TOTAL, "Transfers by result");
    describe_gauge!(OUTAGES_ACTIVE, "Outages in force");
    describe_counter!(
        OUTAGE_ANNOUNCEMENTS_TOTAL,
        "Outage announcements by outage id"
    );
    describe_histogram!(
        TIME_TO_OUTAGE_NOTICE_SECONDS,
        Unit::Seconds,
        "Answer to start of the outage prompt"
    );
    describe_counter!(CALLBACKS_TOTAL, "Callback requests recorded");
    describe_counter!(ASR_RESULTS_TOTAL, "How transcripts were used");
    describe_histogram!(
        ASR_CONFIDENCE,
        "Confidence of the best intent for transcripts heard in menus"
    );
    describe_counter!(LIMITS_HIT_TOTAL, "Configured limits hit, by limit");
    describe_histogram!(
        ASR_SECONDS,
        Unit::Seconds,
        "Time to transcribe an utterance"
    );
    describe_gauge!(ASR_QUEUE_DEPTH, "Utterances waiting for a Whisper worker");
    describe_counter!(
        UPSET_CALLERS_TOTAL,
        "Callers found upset (acknowledged, offered a person), by cause"
    );
    describe_histogram!(
        TTS_RENDER_SECONDS,
        Unit::Seconds,
        "Texts spoken per call: asked to audio ready, by source"
    );
    // Series that should read 0 rather than be absent before the first event.
    metrics::counter!(RING_BUDGET_EXCEEDED_TOTAL).absolute(0);
    metrics::gauge!(CALLS_ACTIVE).set(0.0);
    metrics::gauge!(OUTAGES_ACTIVE).set(0.0);
}
