//! Several ivrd nodes behind Kamailio (Debian's kamailio 5.6, the dispatcher module, the
//! config shipped in contrib/kamailio) sharing state in PostgreSQL 15 (a cluster of the
//! test's own): three nodes on 127.0.0.2-4, everything real on loopback.
//!
//! - SIPp load through Kamailio is spread over the nodes, with no failed call.
//! - An outage started through node 1's API is known to nodes 2 and 3 within a second, and
//!   their callers hear it (the transfer after it says so).
//! - kill -9 of a node: new calls are still answered within the ring budget (the dispatcher
//!   fails over), and nothing stored is lost.
//! - A node drained (SIGTERM) under load: no failed call.
//! - PostgreSQL restarted under load: no failed call, and the calls' writes land after.
//! - An agent both nodes' queues know takes one call at a time: the second node waits while
//!   the first talks to the agent, and the agent goes to the caller who waited longest on
//!   either node as soon as the first lets go.

mod support;

use std::net::SocketAddr;
use std::process::Command;
use std::time::{Duration, Instant};
use support::caller::{Caller, CallerOpts};
use support::postgres::Postgres;
use support::sipp::Sipp;
use support::{free_udp_port, metric_sum, wait_for, ChildGuard, Daemon, DaemonOpts, TempDir};

const SIP_WAIT: Duration = Duration::from_secs(5);
const RING_BUDGET: Duration = Duration::from_millis(4000);

struct Cluster {
    nodes: Vec<Daemon>,
    kamailio: SocketAddr,
    _kamailio: ChildGuard,
    _dir: TempDir,
    pg: Postgres,
}

fn node(pg: &Postgres, ip: &str, name: &str) -> Daemon {
    Daemon::start(DaemonOpts {
        sip_ip: ip.into(),
        // Fixed: Kamailio's list names it, and a restarted node must come back where it was.
        sip_port: free_udp_port(),
        drain_timeout_s: Some(30),
        extra_yaml: format!("store: {{postgres: \"{}\", node: {name}}}\n", pg.url()),
        ..DaemonOpts::default()
    })
}

fn cluster() -> Cluster {
    let pg = Postgres::start();
    let nodes: Vec<Daemon> = ["127.0.0.2", "127.0.0.3", "127.0.0.4"]
        .iter()
        .enumerate()
        .map(|(i, ip)| node(&pg, ip, &format!("node{}", i + 1)))
        .collect();
    let dir = TempDir::new("kamailio");
    let list = dir.join("nodes.list");
    let text: String = nodes
        .iter()
        .map(|n| format!("1 sip:{}\n", n.sip_udp))
        .collect();
    std::fs::write(&list, text).unwrap();
    let port = free_udp_port();
    let kamailio: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let cfg = support::repo_root().join("contrib/kamailio/kamailio.cfg");
    let mut cmd = Command::new("kamailio");
    cmd.arg("-f")
        .arg(&cfg)
        .args(["-DD", "-E", "-A", "CHILDREN=1", "-A"])
        .arg(format!("LISTEN=udp:{kamailio}"))
        .arg("-A")
        .arg(format!("DISPATCHER_LIST=\"{}\"", list.display()))
        .arg("-Y")
        .arg(dir.path())
        .arg("-P")
        .arg(dir.join("kamailio.pid"))
        .arg("-w")
        .arg(dir.path())
        .current_dir(dir.path());
    let guard = ChildGuard::spawn(cmd, "kamailio");
    // Kamailio is up once it answers OPTIONS; every node is in once it has taken a call.
    wait_for(Duration::from_secs(20), || {
        answers_options(kamailio).then_some(())
    })
    .expect("kamailio answers");
    let c = Cluster {
        nodes,
        kamailio,
        _kamailio: guard,
        _dir: dir,
        pg,
    };
    let all_in = wait_for(Duration::from_secs(20), || {
        let caller = Caller::new(c.kamailio, CallerOpts::default());
        let ok = caller.invite(SIP_WAIT);
        if ok.status() == Some(200) {
            let _ = caller.bye(SIP_WAIT);
        }
        c.nodes.iter().all(|n| calls(n) >= 1.0).then_some(())
    });
    assert!(
        all_in.is_some(),
        "not every node took a call through Kamailio"
    );
    c
}

/// A flow that queues every caller in `support`, and says goodbye after the agent.
const QUEUE_FLOW: &str = "\
version: 1
flow: queued
start: greet
nodes:
  greet:
    play: to_billing
    next: wait
  wait:
    queue: support
    on_timeout: bye
    on_no_agents: bye
    after_agent: bye
  bye:
    play: after_agent
    hangup: true
";

fn agent_state(d: &Daemon, id: &str) -> String {
    d.api_json("/api/agents")
        .as_array()
        .and_then(|a| a.iter().find(|x| x["id"] == id))
        .and_then(|a| a["state"].as_str())
        .unwrap_or("?")
        .to_string()
}

/// ~30 s: two nodes on one PostgreSQL, each with agent `ann` (a SIPp UAS that answers and
/// hangs up after 4 s) in its queue. Caller A on node 1 is bridged to ann; caller B on node
/// 2 then waits, with ann shown `elsewhere` there and never rung twice; caller C joins on
/// node 1 after B. When node 1 is done with ann (A's call and 1 s of wrap-up), ann goes to B
/// on node 2, who has waited longer, not to C on her own node; then to C. Ann set away on
/// node 1 is away on node 2 within a second.
#[test]
fn an_agent_two_nodes_share_takes_one_call_at_a_time_in_fair_order() {
    let pg = Postgres::start();
    let flows = support::flows::flows_dir(&[("queued", QUEUE_FLOW)]);
    let port = free_udp_port();
    let phone = std::thread::spawn(move || {
        Sipp::new("agent_answer.xml", "127.0.0.1:9".parse().unwrap())
            .local_port(port)
            .calls(3)
            .arg("-d")
            .arg("4000")
            .timeout(Duration::from_secs(90))
            .run()
    });
    let nodes: Vec<Daemon> = ["127.0.0.2", "127.0.0.3"]
        .iter()
        .enumerate()
        .map(|(i, ip)| {
            Daemon::start(DaemonOpts {
                sip_ip: ip.to_string(),
                flows_dir: flows.path().to_path_buf(),
                default_flow: "queued".into(),
                extra_yaml: format!(
                    "store: {{postgres: \"{}\", node: node{}}}\n\
                     agents:\n  - {{id: ann, name: Ann, uri: \"sip:ann@127.0.0.1:{port}\"}}\n\
                     queues:\n  support:\n    agents: [ann]\n    wrap_up_s: 1\n    announce_every_s: 0\n",
                    pg.url(),
                    i + 1
                ),
                ..DaemonOpts::default()
            })
        })
        .collect();
    let (one, two) = (&nodes[0], &nodes[1]);
    let state_is = |n: &Daemon, want: &str, within: Duration| {
        wait_for(within, || {
            (agent_state(n, "ann") == want).then(Instant::now)
        })
        .unwrap_or_else(|| {
            panic!(
                "ann not {want} on {}: {}",
                n.sip_udp,
                n.api_json("/api/agents")
            )
        })
    };
    let waiting = |n: &Daemon| n.api_json("/api/queues")[0]["waiting"].as_u64();
    let a = Caller::new(one.sip_udp, CallerOpts::default());
    assert_eq!(a.invite(SIP_WAIT).status(), Some(200), "{}", a.sip_trace());
    let started = state_is(one, "talking", Duration::from_secs(15));
    let b = Caller::new(two.sip_udp, CallerOpts::default());
    assert_eq!(b.invite(SIP_WAIT).status(), Some(200), "{}", b.sip_trace());
    // Node 2 tries ann, finds her held by node 1, and keeps its caller waiting.
    state_is(two, "elsewhere", Duration::from_secs(10));
    assert_eq!(waiting(two), Some(1), "{}", two.api_json("/api/queues"));
    // C joins on node 1 once B is in line (B waited longer).
    let c = Caller::new(one.sip_udp, CallerOpts::default());
    assert_eq!(c.invite(SIP_WAIT).status(), Some(200), "{}", c.sip_trace());
    wait_for(Duration::from_secs(10), || {
        (waiting(one) == Some(1)).then_some(())
    })
    .unwrap_or_else(|| panic!("C not waiting on node 1: {}", one.api_json("/api/queues")));
    assert_eq!(agent_state(one, "ann"), "talking");
    // Ann hangs up on A (4 s), wraps up on node 1 (1 s), then goes to B on node 2.
    let to_b = state_is(two, "talking", Duration::from_secs(20));
    assert_eq!(waiting(one), Some(1), "C was served before B");
    assert_eq!(agent_state(one, "ann"), "elsewhere");
    // After B's call, ann comes back to node 1 for C.
    let back = state_is(two, "available", Duration::from_secs(20));
    let to_c = state_is(one, "talking", Duration::from_secs(10));
    eprintln!(
        "ann free on node 2 -> talking on node 1 after {:?}; A's call to B's: {:?}",
        to_c.saturating_duration_since(back),
        to_b.saturating_duration_since(started)
    );
    let run = phone.join().unwrap();
    run.assert_success();
    let invites = run.messages_log.matches("INVITE sip:ann@").count();
    assert_eq!(invites, 3, "ann was rung {invites} times for 3 calls");
    for caller in [&a, &b, &c] {
        assert!(
            wait_for(Duration::from_secs(15), || caller.bye_received()).is_some(),
            "a caller was not sent on after ann\n{}",
            caller.sip_trace()
        );
    }
    // Ann goes away through node 1's API: node 2 knows within a second.
    let set = Instant::now();
    let (status, body) = one.api(
        "POST",
        "/api/agents/ann/state",
        Some(r#"{"state": "away"}"#),
    );
    assert_eq!(status, 200, "{body}");
    let known = wait_for(Duration::from_secs(5), || {
        (agent_state(two, "ann") == "away").then(|| set.elapsed())
    })
    .unwrap_or_else(|| {
        panic!(
            "node 2 did not learn ann is away: {}",
            two.api_json("/api/agents")
        )
    });
    eprintln!("ann away on node 1 -> away on node 2 after {known:?}");
    assert!(known < Duration::from_secs(1), "{known:?}");
}

/// Whether `to` answers an OPTIONS with 200 within half a second (raw UDP: a peer that is
/// not up yet is a normal answer here, not a failure).
fn answers_options(to: SocketAddr) -> bool {
    let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let me = sock.local_addr().unwrap();
    let msg = format!(
        "OPTIONS sip:{to} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bK{tag}\r\nMax-Forwards: 70\r\nFrom: <sip:probe@{me}>;tag={tag}\r\nTo: <sip:{to}>\r\nCall-ID: {tag}@test\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n",
        tag = support::token()
    );
    let _ = sock.send_to(msg.as_bytes(), to);
    sock.set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let mut buf = [0u8; 4096];
    matches!(sock.recv(&mut buf), Ok(n) if buf[..n].starts_with(b"SIP/2.0 200"))
}

/// Calls a node has finished (any outcome).
fn calls(n: &Daemon) -> f64 {
    metric_sum(&n.metrics(), "ivrd_calls_total", &[])
}

/// SIPp's call through a proxy (2 s, Record-Route followed) `calls` times at `rate` per second.
fn load(
    target: SocketAddr,
    calls: u32,
    rate: f64,
) -> std::thread::JoinHandle<support::sipp::SippRun> {
    std::thread::spawn(move || {
        Sipp::new("basic_call.xml", target)
            .calls(calls)
            .rate(rate)
            .limit(200)
            .timeout(Duration::from_secs(120))
            .run()
    })
}

#[test]
fn calls_spread_over_the_nodes_and_outages_reach_every_node() {
    let c = cluster();
    let before: Vec<f64> = c.nodes.iter().map(calls).collect();
    let run = load(c.kamailio, 60, 15.0).join().unwrap();
    run.assert_success();
    let taken: Vec<f64> = c
        .nodes
        .iter()
        .zip(&before)
        .map(|(n, b)| calls(n) - b)
        .collect();
    eprintln!("calls per node: {taken:?}");
    assert_eq!(taken.iter().sum::<f64>(), 60.0, "{taken:?}");
    assert!(
        taken.iter().all(|t| *t >= 10.0),
        "unevenly spread: {taken:?}"
    );

    // An outage started on node 1 is known on nodes 2 and 3 within a second.
    let started = Instant::now();
    let (status, body) = c.nodes[0].api(
        "POST",
        "/api/outages",
        Some(r#"{"id": "net-north", "message": "Our network is down in the north."}"#),
    );
    assert!(status == 200 || status == 201, "{status} {body}");
    for n in &c.nodes[1..] {
        let known = wait_for(Duration::from_secs(5), || {
            let v = n.api_json("/api/outages");
            v.as_array()
                .unwrap()
                .iter()
                .any(|o| o["id"] == "net-north")
                .then(|| started.elapsed())
        })
        .expect("the outage reached the node");
        eprintln!("outage known on {} after {known:?}", n.sip_udp);
        assert!(known < Duration::from_secs(1), "{known:?}");
    }
    // Their callers hear it: a caller who presses 1 at once keeps it through the notice,
    // and the transfer after it names the outage.
    for n in &c.nodes[1..] {
        let caller = n.answered_call(CallerOpts::default());
        caller.send_dtmf("1", 100);
        let refer = caller
            .wait_request("REFER", 0, Duration::from_secs(30))
            .unwrap_or_else(|| panic!("no REFER\n{}", caller.sip_trace()));
        assert_eq!(
            refer.msg.header("X-IVR-Outage"),
            Some("net-north"),
            "{}",
            refer.msg
        );
        let _ = caller.bye(SIP_WAIT);
    }
}

#[test]
fn a_killed_node_loses_no_new_call_and_nothing_stored() {
    let mut c = cluster();
    // Something stored through the node that will die.
    let (status, _) = c.nodes[2].api(
        "POST",
        "/api/outages",
        Some(r#"{"id": "cards", "message": "Card payments are failing.", "scope": ["billing"]}"#),
    );
    assert!(status == 200 || status == 201);
    let (status, _) = c.nodes[2].api("PUT", "/api/callers/5557777", Some(r#"{"name": "Ann"}"#));
    assert_eq!(status, 200);
    let background = load(c.kamailio, 40, 8.0);
    // Kill it while it has calls of the load (a load that ended first says why).
    let loaded = wait_for(Duration::from_secs(10), || {
        if background.is_finished() {
            return Some(false);
        }
        (c.nodes[2].metric("ivrd_calls_active").unwrap_or(0.0) >= 1.0).then_some(true)
    });
    if loaded != Some(true) {
        let early = background
            .is_finished()
            .then(|| background.join().unwrap().report());
        panic!(
            "node 3 never had a call of the load\n{}",
            early.unwrap_or_default()
        );
    }
    let pid = c.nodes[2].pid();
    let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
    let killed_at = Instant::now();
    // New calls through Kamailio: every one answered within the ring budget.
    let mut slowest = Duration::ZERO;
    for _ in 0..12 {
        let caller = Caller::new(c.kamailio, CallerOpts::default());
        let sent = Instant::now();
        let ok = caller.invite(Duration::from_secs(10));
        let took = sent.elapsed();
        assert_eq!(ok.status(), Some(200), "{}", caller.sip_trace());
        assert!(
            took <= RING_BUDGET,
            "answered after {took:?}\n{}",
            caller.sip_trace()
        );
        slowest = slowest.max(took);
        let _ = caller.bye(SIP_WAIT);
    }
    eprintln!(
        "after kill -9: 12 new calls answered, slowest in {slowest:?} ({:?} after the kill)",
        killed_at.elapsed()
    );
    let run = background.join().unwrap();
    eprintln!("background load across the kill: exit {:?}", run.code);
    // Nothing stored was lost: the surviving nodes have the outage and the caller.
    for n in &c.nodes[..2] {
        let v = n.api_json("/api/outages");
        assert!(
            v.as_array().unwrap().iter().any(|o| o["id"] == "cards"),
            "{v}"
        );
        assert_eq!(n.api_json("/api/callers/5557777")["name"], "Ann");
    }
    // The node comes back (same state): Kamailio takes it in again once it answers OPTIONS.
    c.nodes[2].kill9_and_restart();
    let back = wait_for(Duration::from_secs(20), || {
        let caller = Caller::new(c.kamailio, CallerOpts::default());
        if caller.invite(SIP_WAIT).status() == Some(200) {
            let _ = caller.bye(SIP_WAIT);
        }
        (calls(&c.nodes[2]) >= 1.0).then_some(())
    });
    assert!(back.is_some(), "the restarted node takes calls again");
}

#[test]
fn draining_a_node_and_restarting_postgres_under_load_fail_no_call() {
    let c = cluster();
    // Drain node 2 while calls arrive: it finishes its calls, refuses new ones with 503
    // (and says so to OPTIONS), and Kamailio sends them on.
    let background = load(c.kamailio, 60, 12.0);
    wait_for(Duration::from_secs(10), || {
        (calls(&c.nodes[1]) >= 3.0).then_some(())
    })
    .expect("node 2 took calls");
    c.nodes[1].signal("TERM");
    let run = background.join().unwrap();
    run.assert_success();
    let mut n2 = c.nodes.into_iter().collect::<Vec<_>>();
    let drained = n2[1]
        .wait_exit(Duration::from_secs(40))
        .expect("the drained node exits");
    assert_eq!(drained.code(), Some(0));

    // PostgreSQL restarted under load: calls go on; what they write lands after.
    let background = load(c.kamailio, 50, 10.0);
    let numbered: Vec<std::thread::JoinHandle<()>> = (0..6)
        .map(|i| {
            let target = c.kamailio;
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(300 * i));
                let caller = Caller::new(
                    target,
                    CallerOpts {
                        from_user: format!("55588{i:02}"),
                        ..CallerOpts::default()
                    },
                );
                let ok = caller.invite(Duration::from_secs(10));
                assert_eq!(ok.status(), Some(200), "{}", caller.sip_trace());
                caller.send_dtmf("1", 100);
                let refer = caller.wait_request("REFER", 0, Duration::from_secs(30));
                assert!(refer.is_some(), "{}", caller.sip_trace());
                let _ = caller.bye(SIP_WAIT);
            })
        })
        .collect();
    c.pg.down();
    std::thread::sleep(Duration::from_secs(3)); // the database stays away a while: what is tested is its absence
    c.pg.up();
    for h in numbered {
        h.join().unwrap();
    }
    background.join().unwrap().assert_success();
    let landed = wait_for(Duration::from_secs(20), || {
        (c.pg.query(
            "SELECT COUNT(*) FROM callers WHERE number LIKE '55588%' AND last_intent = 'billing'",
        ) == "6")
            .then_some(())
    });
    assert!(
        landed.is_some(),
        "calls' writes after the restart: {}",
        c.pg.query("SELECT COUNT(*) FROM callers WHERE number LIKE '55588%'")
    );
    drop(n2);
}
