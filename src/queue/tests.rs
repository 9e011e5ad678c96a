use super::*;

fn agent(id: &str) -> AgentSettings {
    AgentSettings {
        id: id.into(),
        name: id.to_uppercase(),
        uri: format!("sip:{id}@127.0.0.1"),
    }
}

fn queue(name: &str, agents: &[&str], strategy: Strategy) -> QueueSettings {
    QueueSettings {
        name: name.into(),
        agents: agents.iter().map(|a| a.to_string()).collect(),
        strategy,
        ring_timeout: Duration::from_secs(15),
        wrap_up: Duration::from_secs(10),
        max_wait: Some(Duration::from_secs(600)),
        announce_every: Some(Duration::from_secs(30)),
        callback_after: None,
        handle_time: None,
    }
}

fn events(b: &mut Board) -> Vec<Event> {
    std::iter::from_fn(|| b.poll_event()).collect()
}

fn offers(evs: &[Event]) -> Vec<(CallKey, String)> {
    evs.iter()
        .filter_map(|e| match e {
            Event::Offer { call, agent, .. } => Some((*call, agent.clone())),
            _ => None,
        })
        .collect()
}

fn state(b: &Board, id: &str) -> AgentState {
    b.agent(id).unwrap().state
}

#[test]
fn a_caller_hears_their_place_and_rings_the_free_agent() {
    let t0 = Instant::now();
    let mut b = Board::new(
        t0,
        vec![agent("a")],
        vec![queue("q", &["a"], Strategy::LongestIdle)],
    );
    b.join(t0, "q", 1).unwrap();
    let evs = events(&mut b);
    assert_eq!(
        evs[0],
        Event::Position {
            call: 1,
            position: 1,
            estimate: None,
            callback: false
        }
    );
    assert_eq!(offers(&evs), [(1, "a".to_string())]);
    assert_eq!(state(&b, "a"), AgentState::Ringing);
    // A second caller waits: the only agent is ringing for the first.
    b.join(t0, "q", 2).unwrap();
    let evs = events(&mut b);
    assert!(offers(&evs).is_empty());
    assert!(matches!(evs[0], Event::Position { position: 2, .. }));
    assert_eq!(
        b.join(t0, "nope", 3),
        Err(BoardError::UnknownQueue("nope".into()))
    );
}

#[test]
fn talk_wrap_up_then_the_next_caller() {
    let t0 = Instant::now();
    let mut b = Board::new(
        t0,
        vec![agent("a")],
        vec![queue("q", &["a"], Strategy::LongestIdle)],
    );
    b.join(t0, "q", 1).unwrap();
    b.join(t0, "q", 2).unwrap();
    events(&mut b);
    let t1 = t0 + Duration::from_secs(3);
    b.answered(t1, 1, "a");
    let evs = events(&mut b);
    assert!(evs.contains(&Event::Connected {
        call: 1,
        queue: "q".into(),
        waited: Duration::from_secs(3),
        predicted: None,
        callback: false
    }));
    assert_eq!(state(&b, "a"), AgentState::Talking);
    let t2 = t1 + Duration::from_secs(120);
    b.talk_ended(t2, "a");
    assert_eq!(state(&b, "a"), AgentState::WrapUp);
    assert!(offers(&events(&mut b)).is_empty(), "wrap-up is kept");
    assert_eq!(b.poll_timeout(), Some(t2 + Duration::from_secs(10)));
    b.handle_timeout(t2 + Duration::from_secs(10));
    assert_eq!(offers(&events(&mut b)), [(2, "a".to_string())]);
    // The handle time now gives estimates: one agent, 120 s a call, and caller 2 (being
    // rung) still ahead of anyone joining now.
    let view = &b.queues(t2)[0];
    assert_eq!(view.average_handle_time, Some(Duration::from_secs(120)));
    assert_eq!(view.estimate, Some(Duration::from_secs(240)));
}

#[test]
fn the_longest_waiting_caller_goes_first_across_queues() {
    let t0 = Instant::now();
    let mut b = Board::new(
        t0,
        vec![agent("shared")],
        vec![
            queue("sales", &["shared"], Strategy::LongestIdle),
            queue("support", &["shared"], Strategy::LongestIdle),
        ],
    );
    b.set_state(t0, "shared", AgentState::Away).unwrap();
    b.set_state(t0, "shared", AgentState::Available).unwrap();
    b.answered(t0, 99, "shared"); // unknown call: nothing happens
    b.join(t0, "support", 1).unwrap();
    b.answered(t0, 1, "shared");
    b.join(t0 + Duration::from_secs(1), "support", 2).unwrap();
    b.join(t0 + Duration::from_secs(2), "sales", 3).unwrap();
    events(&mut b);
    b.talk_ended(t0 + Duration::from_secs(5), "shared");
    b.handle_timeout(t0 + Duration::from_secs(15));
    assert_eq!(
        offers(&events(&mut b)),
        [(2, "shared".to_string())],
        "support's caller has waited longer"
    );
}

#[test]
fn longest_idle_and_round_robin_choose_differently() {
    let t0 = Instant::now();
    let later = t0 + Duration::from_secs(60);
    let mut idle = Board::new(
        t0,
        vec![agent("a"), agent("b")],
        vec![queue("q", &["a", "b"], Strategy::LongestIdle)],
    );
    idle.set_state(t0, "a", AgentState::Away).unwrap();
    idle.set_state(t0 + Duration::from_secs(1), "a", AgentState::Available)
        .unwrap();
    idle.join(later, "q", 1).unwrap();
    assert_eq!(offers(&events(&mut idle)), [(1, "b".to_string())]);

    let mut rr = Board::new(
        t0,
        vec![agent("a"), agent("b")],
        vec![queue("q", &["a", "b"], Strategy::RoundRobin)],
    );
    for call in 1..=3 {
        rr.join(later, "q", call).unwrap();
        let evs = events(&mut rr);
        let (_, who) = offers(&evs)[0].clone();
        rr.answered(later, call, &who);
        rr.talk_ended(later, &who);
        rr.handle_timeout(later + Duration::from_secs(10));
        events(&mut rr);
        assert_eq!(who, ["a", "b", "a"][call as usize - 1]);
    }
}

#[test]
fn ring_all_rings_everyone_and_the_first_answer_wins() {
    let t0 = Instant::now();
    let mut b = Board::new(
        t0,
        vec![agent("a"), agent("b")],
        vec![queue("q", &["a", "b"], Strategy::RingAll)],
    );
    b.join(t0, "q", 1).unwrap();
    assert_eq!(offers(&events(&mut b)).len(), 2);
    b.answered(t0, 1, "b");
    let evs = events(&mut b);
    assert!(evs.contains(&Event::Withdraw {
        call: 1,
        agent: "a".into()
    }));
    assert_eq!(state(&b, "a"), AgentState::Available);
    assert_eq!(state(&b, "b"), AgentState::Talking);
}

#[test]
fn no_answer_rings_the_next_agent_and_keeps_the_place() {
    let t0 = Instant::now();
    let mut b = Board::new(
        t0,
        vec![agent("a"), agent("b")],
        vec![queue("q", &["a", "b"], Strategy::RoundRobin)],
    );
    b.join(t0, "q", 1).unwrap();
    b.join(t0, "q", 2).unwrap();
    assert_eq!(
        offers(&events(&mut b)),
        [(1, "a".to_string()), (2, "b".to_string())]
    );
    let t1 = t0 + Duration::from_secs(15);
    b.offer_failed(t1, 1, "a", OfferEnd::NoAnswer);
    // a is skipped for caller 1 but free for nobody else (2 is ringing b): nothing now.
    assert!(offers(&events(&mut b)).is_empty());
    b.offer_failed(t1, 2, "b", OfferEnd::Busy);
    // Caller 1 is still first: b (not tried by 1) rings for 1; a rings for 2.
    assert_eq!(
        offers(&events(&mut b)),
        [(1, "b".to_string()), (2, "a".to_string())]
    );
    b.offer_failed(t1, 1, "b", OfferEnd::Failed);
    assert!(offers(&events(&mut b)).is_empty());
    // Both agents were tried for caller 1: after the pause they are rung again.
    assert_eq!(b.poll_timeout(), Some(t1 + RETRY_PAUSE));
    b.handle_timeout(t1 + RETRY_PAUSE);
    assert_eq!(offers(&events(&mut b)), [(1, "b".to_string())]);
}

#[test]
fn nobody_serving_means_no_agents_at_once_and_when_the_last_one_leaves() {
    let t0 = Instant::now();
    let mut b = Board::new(
        t0,
        vec![agent("a")],
        vec![queue("q", &["a"], Strategy::LongestIdle)],
    );
    b.set_state(t0, "a", AgentState::Offline).unwrap();
    b.join(t0, "q", 1).unwrap();
    assert_eq!(events(&mut b), [Event::NoAgents { call: 1 }]);
    b.set_state(t0, "a", AgentState::Available).unwrap();
    b.join(t0, "q", 2).unwrap();
    b.offer_failed(t0, 2, "a", OfferEnd::NoAnswer);
    events(&mut b);
    b.set_state(t0, "a", AgentState::Away).unwrap();
    assert_eq!(events(&mut b), [Event::NoAgents { call: 2 }]);
    assert_eq!(b.queues(t0)[0].waiting, 0);
}

#[test]
fn the_wait_has_a_limit_and_announcements_repeat() {
    let t0 = Instant::now();
    let mut b = Board::new(
        t0,
        vec![agent("a")],
        vec![queue("q", &["a"], Strategy::LongestIdle)],
    );
    b.join(t0, "q", 1).unwrap();
    b.answered(t0, 1, "a");
    b.join(t0, "q", 2).unwrap();
    events(&mut b);
    assert_eq!(b.poll_timeout(), Some(t0 + Duration::from_secs(30)));
    b.handle_timeout(t0 + Duration::from_secs(30));
    assert_eq!(
        events(&mut b),
        [Event::Position {
            call: 2,
            position: 1,
            estimate: None,
            callback: false
        }]
    );
    b.handle_timeout(t0 + Duration::from_secs(600));
    let evs = events(&mut b);
    assert!(evs.contains(&Event::TimedOut { call: 2 }));
    b.leave(t0, 2); // already gone: nothing more
    assert!(events(&mut b).is_empty());
}

#[test]
fn a_caller_who_leaves_stops_the_ringing_and_counts_as_abandoned() {
    let t0 = Instant::now();
    let mut b = Board::new(
        t0,
        vec![agent("a")],
        vec![queue("q", &["a"], Strategy::LongestIdle)],
    );
    b.join(t0, "q", 1).unwrap();
    events(&mut b);
    b.leave(t0 + Duration::from_secs(4), 1);
    let evs = events(&mut b);
    assert!(evs.contains(&Event::Withdraw {
        call: 1,
        agent: "a".into()
    }));
    assert!(evs.contains(&Event::Abandoned {
        queue: "q".into(),
        waited: Duration::from_secs(4)
    }));
    assert_eq!(state(&b, "a"), AgentState::Available);
}

#[test]
fn away_during_a_call_applies_after_it() {
    let t0 = Instant::now();
    let mut b = Board::new(
        t0,
        vec![agent("a")],
        vec![queue("q", &["a"], Strategy::LongestIdle)],
    );
    b.join(t0, "q", 1).unwrap();
    b.answered(t0, 1, "a");
    b.set_state(t0, "a", AgentState::Away).unwrap();
    assert_eq!(state(&b, "a"), AgentState::Talking);
    assert_eq!(b.agent("a").unwrap().after_call, Some(AgentState::Away));
    b.talk_ended(t0 + Duration::from_secs(60), "a");
    b.handle_timeout(t0 + Duration::from_secs(70));
    assert_eq!(state(&b, "a"), AgentState::Away);
    assert_eq!(
        b.set_state(t0, "a", AgentState::Talking),
        Err(BoardError::NotSettable("talking"))
    );
    assert_eq!(
        b.set_state(t0, "zed", AgentState::Away),
        Err(BoardError::UnknownAgent("zed".into()))
    );
}

#[test]
fn the_estimate_shares_callers_among_the_serving_agents() {
    let t0 = Instant::now();
    let mut b = Board::new(
        t0,
        vec![agent("a"), agent("b")],
        vec![queue("q", &["a", "b"], Strategy::LongestIdle)],
    );
    // Two talks of 60 and 180 s: 120 s average.
    for (call, agent, secs) in [(1, "a", 60), (2, "b", 180)] {
        b.join(t0, "q", call).unwrap();
        b.answered(t0, call, agent);
        b.talk_ended(t0 + Duration::from_secs(secs), agent);
    }
    // a is free again (its wrap-up ended while b talked), b wraps up: the first caller
    // goes straight to a, the second waits for two calls shared by two agents.
    events(&mut b);
    let t1 = t0 + Duration::from_secs(185);
    b.join(t1, "q", 3).unwrap();
    b.join(t1, "q", 4).unwrap();
    let evs = events(&mut b);
    let estimates: Vec<Option<Duration>> = evs
        .iter()
        .filter_map(|e| match e {
            Event::Position { estimate, .. } => Some(*estimate),
            _ => None,
        })
        .collect();
    assert_eq!(
        estimates,
        [Some(Duration::ZERO), Some(Duration::from_secs(120))]
    );
}

fn callbacks_on(b: Board) -> Board {
    b.with_callbacks(CallbackPolicy {
        max_per_queue: 5,
        attempts: 2,
        retry: Duration::from_secs(60),
    })
}

fn long_wait_queue(name: &str, agents: &[&str]) -> QueueSettings {
    QueueSettings {
        strategy: Strategy::RoundRobin,
        handle_time: Some(Duration::from_secs(600)),
        callback_after: Some(Duration::from_secs(30)),
        announce_every: Some(Duration::from_secs(3)),
        ..queue(name, agents, Strategy::RoundRobin)
    }
}

fn positions(evs: &[Event]) -> Vec<(CallKey, bool)> {
    evs.iter()
        .filter_map(|e| match e {
            Event::Position { call, callback, .. } => Some((*call, *callback)),
            _ => None,
        })
        .collect()
}

#[test]
fn a_long_wait_offers_a_callback_and_the_kept_place_is_called_back_first() {
    let t0 = Instant::now();
    let mut b = callbacks_on(Board::new(
        t0,
        vec![agent("a")],
        vec![long_wait_queue("q", &["a"])],
    ));
    b.join(t0, "q", 1).unwrap();
    assert_eq!(
        positions(&events(&mut b)),
        [(1, false)],
        "a free agent: no wait"
    );
    b.join(t0, "q", 2).unwrap();
    assert_eq!(
        positions(&events(&mut b)),
        [(2, true)],
        "600 s behind caller 1"
    );
    let t1 = t0 + Duration::from_secs(3);
    b.handle_timeout(t1);
    assert_eq!(
        positions(&events(&mut b)),
        [(1, true), (2, true)],
        "caller 1 waits on a ringing agent now"
    );
    // Caller 1 takes it: the ringing stops, the place stays (caller 2 is still behind).
    b.keep_place(t1, 1).unwrap();
    let evs = events(&mut b);
    assert!(evs.contains(&Event::Withdraw {
        call: 1,
        agent: "a".into()
    }));
    // The agent is free: the kept place comes first and the agent is reserved for it.
    assert!(evs.contains(&Event::CallbackDue {
        call: 1,
        agent: "a".into()
    }));
    assert_eq!(state(&b, "a"), AgentState::Ringing);
    assert_eq!(b.queues(t1)[0].waiting, 2);
    // The call back reaches the caller and joins: the reserved agent is offered at once.
    b.join(t1, "q", 1).unwrap();
    assert_eq!(offers(&events(&mut b)), [(1, "a".to_string())]);
    b.answered(t1, 1, "a");
    assert!(events(&mut b).iter().any(|e| matches!(
        e,
        Event::Connected {
            call: 1,
            callback: true,
            ..
        }
    )));
}

#[test]
fn an_unanswered_call_back_is_retried_with_backoff_then_given_up() {
    let t0 = Instant::now();
    let mut b = callbacks_on(Board::new(
        t0,
        vec![agent("a")],
        vec![long_wait_queue("q", &["a"])],
    ));
    b.restore_callback(t0, "q", 7, t0, 0).unwrap();
    assert!(events(&mut b).contains(&Event::CallbackDue {
        call: 7,
        agent: "a".into()
    }));
    b.callback_failed(t0, 7);
    assert_eq!(state(&b, "a"), AgentState::Available);
    assert!(events(&mut b).is_empty(), "not again before the retry");
    assert_eq!(b.poll_timeout(), Some(t0 + Duration::from_secs(60)));
    // A caller on the line meanwhile is behind the kept place but gets the free agent.
    b.join(t0, "q", 8).unwrap();
    assert_eq!(offers(&events(&mut b)), [(8, "a".to_string())]);
    b.answered(t0, 8, "a");
    b.talk_ended(t0 + Duration::from_secs(50), "a");
    b.handle_timeout(t0 + Duration::from_secs(60));
    assert!(events(&mut b).contains(&Event::CallbackDue {
        call: 7,
        agent: "a".into()
    }));
    b.callback_failed(t0 + Duration::from_secs(61), 7);
    assert!(events(&mut b).contains(&Event::CallbackGaveUp { call: 7 }));
    assert_eq!(b.queues(t0)[0].waiting, 0);
}

#[test]
fn callbacks_are_capped_and_keep_their_place_across_a_restart() {
    let t0 = Instant::now();
    let mut b = Board::new(t0, vec![agent("a")], vec![long_wait_queue("q", &["a"])]);
    b.join(t0, "q", 1).unwrap();
    events(&mut b);
    assert_eq!(
        b.keep_place(t0, 1),
        Err(BoardError::CallbacksFull("q".into())),
        "callbacks off (no trunk): none kept"
    );
    let mut b = callbacks_on(Board::new(
        t0,
        vec![agent("a")],
        vec![long_wait_queue("q", &["a"])],
    ));
    b.set_state(t0, "a", AgentState::Away).unwrap();
    // Restored places go back in the order callers joined, whatever the restore order.
    let later = t0 + Duration::from_secs(10);
    b.restore_callback(later, "q", 20, later, 0).unwrap();
    b.restore_callback(later, "q", 10, t0, 0).unwrap();
    b.set_state(later, "a", AgentState::Available).unwrap();
    assert!(events(&mut b).contains(&Event::CallbackDue {
        call: 10,
        agent: "a".into()
    }));
}

#[test]
fn a_registered_agent_is_available_at_their_phone_until_the_binding_ends() {
    let t0 = Instant::now();
    let phone = AgentSettings {
        uri: String::new(),
        ..agent("reg")
    };
    let mut b = Board::new(
        t0,
        vec![phone],
        vec![queue("q", &["reg"], Strategy::LongestIdle)],
    );
    assert_eq!(state(&b, "reg"), AgentState::Offline, "not logged in yet");
    b.register(t0, "reg", "sip:reg@10.0.0.9:5062", Duration::from_secs(60))
        .unwrap();
    assert_eq!(state(&b, "reg"), AgentState::Available);
    b.join(t0, "q", 1).unwrap();
    let evs = events(&mut b);
    assert!(evs
        .iter()
        .any(|e| matches!(e, Event::Offer { uri, .. } if uri == "sip:reg@10.0.0.9:5062")));
    b.offer_failed(t0, 1, "reg", OfferEnd::NoAnswer);
    b.leave(t0, 1);
    assert_eq!(b.poll_timeout(), Some(t0 + Duration::from_secs(60)));
    b.handle_timeout(t0 + Duration::from_secs(60));
    assert_eq!(state(&b, "reg"), AgentState::Offline, "the binding ran out");
    assert!(b
        .register(t0, "nobody", "sip:x@y", Duration::from_secs(1))
        .is_err());
}

#[test]
fn review_no_timer_in_the_past_after_a_failed_call_back() {
    let t0 = Instant::now();
    let mut b = callbacks_on(Board::new(
        t0,
        vec![agent("a")],
        vec![long_wait_queue("q", &["a"])],
    ));
    b.set_state(t0, "a", AgentState::Away).unwrap();
    b.restore_callback(t0, "q", 7, t0, 0).unwrap();
    b.set_state(t0, "a", AgentState::Available).unwrap();
    events(&mut b);
    b.callback_failed(t0, 7);
    b.set_state(t0, "a", AgentState::Away).unwrap();
    // The retry time passes while nobody is free: the board must not keep asking to be
    // woken in the past (the service would spin).
    let later = t0 + Duration::from_secs(61);
    b.handle_timeout(later);
    assert!(
        b.poll_timeout().is_none_or(|t| t > later),
        "{:?}",
        b.poll_timeout()
    );
}

#[test]
fn review_a_kept_place_outlives_its_first_call_and_the_wait_limit() {
    let t0 = Instant::now();
    let mut b = callbacks_on(Board::new(
        t0,
        vec![agent("a"), agent("b")],
        vec![QueueSettings {
            max_wait: Some(Duration::from_secs(10)),
            ..long_wait_queue("q", &["a", "b"])
        }],
    ));
    b.set_state(t0, "a", AgentState::Away).unwrap();
    b.set_state(t0, "b", AgentState::Away).unwrap();
    b.join(t0, "q", 1).unwrap();
    // Nobody serving: the caller is sent on at once; make one serve first.
    b.set_state(t0, "a", AgentState::Available).unwrap();
    b.join(t0, "q", 2).unwrap();
    events(&mut b);
    b.keep_place(t0, 2).unwrap();
    // The caller hangs up right after pressing 1: the place stays.
    b.leave(t0, 2);
    assert!(b.is_waiting(2));
    // Called back long after the wait limit: not timed out on return.
    let t1 = t0 + Duration::from_secs(100);
    b.join(t1, "q", 2).unwrap();
    b.handle_timeout(t1 + Duration::from_secs(1));
    assert!(!events(&mut b).contains(&Event::TimedOut { call: 2 }));
}

#[test]
fn review_news_of_an_old_offer_does_not_free_an_agent_ringing_for_someone_else() {
    let t0 = Instant::now();
    let mut b = Board::new(
        t0,
        vec![agent("x")],
        vec![queue("q", &["x"], Strategy::LongestIdle)],
    );
    b.join(t0, "q", 1).unwrap();
    b.join(t0, "q", 2).unwrap();
    events(&mut b);
    b.leave(t0, 1); // x is free, then rung for 2
    assert_eq!(offers(&events(&mut b)), [(2, "x".to_string())]);
    b.offer_failed(t0, 1, "x", OfferEnd::NoAnswer); // caller 1's leg news, late
    assert_eq!(
        state(&b, "x"),
        AgentState::Ringing,
        "still ringing for caller 2"
    );
    b.join(t0, "q", 3).unwrap();
    assert!(offers(&events(&mut b)).is_empty(), "not offered twice");
}

#[test]
fn an_agent_another_node_holds_is_skipped_until_it_lets_them_go() {
    let t0 = Instant::now();
    let mut b = Board::new(
        t0,
        vec![agent("a"), agent("b")],
        vec![queue("q", &["a", "b"], Strategy::RoundRobin)],
    );
    b.join(t0, "q", 1).unwrap();
    assert_eq!(offers(&events(&mut b)), [(1, "a".to_string())]);
    // The claim for "a" failed: another node rings or talks to them. The caller keeps
    // their place and "b" rings at once.
    b.taken_elsewhere(t0, 1, "a");
    assert_eq!(state(&b, "a"), AgentState::Elsewhere);
    assert_eq!(offers(&events(&mut b)), [(1, "b".to_string())]);
    b.taken_elsewhere(t0, 1, "b");
    // Nobody free here, but both serve: the caller waits (no NoAgents), no offer.
    let evs = events(&mut b);
    assert!(offers(&evs).is_empty(), "{evs:?}");
    assert!(!evs.contains(&Event::NoAgents { call: 1 }));
    assert!(b.is_waiting(1));
    assert_eq!(b.queues(t0)[0].serving_agents, 2);
    // Setting an agent away while elsewhere applies once the other node lets them go.
    b.set_state(t0, "b", AgentState::Away).unwrap();
    assert_eq!(state(&b, "b"), AgentState::Elsewhere);
    let t1 = t0 + Duration::from_secs(20);
    b.free_elsewhere(t1, "b");
    assert_eq!(state(&b, "b"), AgentState::Away);
    assert!(offers(&events(&mut b)).is_empty());
    // "a" is let go: offered to the caller who kept their place.
    b.free_elsewhere(t1, "a");
    assert_eq!(offers(&events(&mut b)), [(1, "a".to_string())]);
    // News for an agent not held elsewhere changes nothing.
    b.free_elsewhere(t1, "a");
    assert_eq!(state(&b, "a"), AgentState::Ringing);
}

#[test]
fn a_callback_reservation_taken_elsewhere_reserves_the_next_agent() {
    let t0 = Instant::now();
    let mut b = Board::new(
        t0,
        vec![agent("a"), agent("b")],
        vec![queue("q", &["a", "b"], Strategy::LongestIdle)],
    )
    .with_callbacks(CallbackPolicy::default());
    b.restore_callback(t0, "q", 7, t0, 0).unwrap();
    let due: Vec<String> = events(&mut b)
        .into_iter()
        .filter_map(|e| match e {
            Event::CallbackDue { call: 7, agent } => Some(agent),
            _ => None,
        })
        .collect();
    assert_eq!(due.len(), 1);
    b.taken_elsewhere(t0, 7, &due[0]);
    let next: Vec<Event> = events(&mut b);
    let other = if due[0] == "a" { "b" } else { "a" };
    assert!(
        next.contains(&Event::CallbackDue {
            call: 7,
            agent: other.into()
        }),
        "{next:?}"
    );
}
