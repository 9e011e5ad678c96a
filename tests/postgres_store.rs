//! The PostgreSQL back end against a real PostgreSQL 15 (a cluster of the test's own): two
//! stores on one database behave as two ivrd nodes would. Migrations taken once when nodes
//! start together; an outage written by one reaches the other's listener within a second;
//! one kept place per number per queue whichever node took it, and exactly one node claims
//! a call back; a call's writes made while the database is down land once it is back.

mod support;

use ivrd::outage::{Outage, OutageSpec, Source};
use ivrd::store::{Claim, Kept, Store};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::postgres::Postgres;
use support::wait_for;

fn outage(id: &str) -> Outage {
    Outage {
        spec: OutageSpec {
            id: id.into(),
            message: Some("Our network is down.".into()),
            prompt: None,
            scope: vec!["all".into()],
            starts_at: None,
            expires_at: None,
            callback: false,
        },
        source: Source::Api,
        updated_at: 1_700_000_000,
        updated_by: "test".into(),
    }
}

#[test]
fn two_nodes_share_outages_callers_and_kept_places() {
    let pg = Postgres::start();
    // Two nodes starting at once: the migrations run once.
    let url = pg.url();
    let (a, b) = std::thread::scope(|s| {
        let a = s.spawn(|| Store::connect(&url, "node-a").expect("node a"));
        let b = s.spawn(|| Store::connect(&url, "node-b").expect("node b"));
        (a.join().unwrap(), b.join().unwrap())
    });
    // Each version once (two nodes, two versions so far).
    assert_eq!(pg.query("SELECT COUNT(*) FROM ivrd_migrations"), "2");
    assert_eq!(pg.query("SELECT MAX(version) FROM ivrd_migrations"), "2");
    assert!(a.describe().contains("node-a") && !a.describe().contains("secret"));

    // An outage written on node a reaches node b's listener within a second.
    let seen = Arc::new(AtomicUsize::new(0));
    let s = seen.clone();
    b.postgres().unwrap().listen_outages(move || {
        s.fetch_add(1, Ordering::SeqCst);
    });
    // The listener reports once when it (re)connects: wait for that first.
    wait_for(Duration::from_secs(10), || {
        (seen.load(Ordering::SeqCst) >= 1).then_some(())
    })
    .expect("listener connected");
    let before = seen.load(Ordering::SeqCst);
    let started = Instant::now();
    a.put_outage(&outage("net-north"), "start").unwrap();
    let heard = wait_for(Duration::from_secs(5), || {
        (seen.load(Ordering::SeqCst) > before).then(|| started.elapsed())
    })
    .expect("node b heard of the outage");
    eprintln!("outage written on a -> notification on b in {heard:?}");
    assert!(heard < Duration::from_secs(1), "{heard:?}");
    assert!(b.outages().unwrap().contains_key("net-north"));
    assert!(b.delete_outage("net-north", "test", 1).unwrap());
    assert!(a.outages().unwrap().is_empty());

    // Caller memory written on a is read on b.
    a.remember_call("5551000", Some("billing"), 1000).unwrap();
    assert_eq!(
        b.caller("5551000").unwrap().unwrap().last_intent.as_deref(),
        Some("billing")
    );

    // One kept place per number per queue, whichever node took it.
    let Kept::New(id) = a.keep_place("5551000", "support", "f", 10, 1).unwrap() else {
        panic!("first place")
    };
    assert_eq!(
        b.keep_place("5551000", "support", "f", 20, 2).unwrap(),
        Kept::Duplicate(id)
    );
    // Exactly one node calls back, however many try at once.
    let claims: Vec<bool> = std::thread::scope(|s| {
        let ha = s.spawn(|| a.claim_callback(id, 0).unwrap());
        let hb = s.spawn(|| b.claim_callback(id, 0).unwrap());
        vec![ha.join().unwrap(), hb.join().unwrap()]
    });
    assert_eq!(claims.iter().filter(|c| **c).count(), 1, "{claims:?}");
    // The winner may claim again (it restarted); the other may not.
    let (winner, loser) = if claims[0] { (&a, &b) } else { (&b, &a) };
    assert!(winner.claim_callback(id, 1).unwrap());
    assert!(!loser.claim_callback(id, 1).unwrap());
    winner.set_callback_state(id, "connected", 1).unwrap();
    assert!(loser.kept_places().unwrap().is_empty());
}

#[test]
fn writes_made_while_the_database_is_down_land_when_it_is_back() {
    let pg = Postgres::start();
    let store = Store::connect(&pg.url(), "node-a").unwrap();
    store.remember_call("5552000", Some("support"), 1).unwrap();
    pg.down();
    // Calls go on: their writes are kept, not refused.
    for i in 0..20 {
        store
            .remember_call(&format!("55530{i:02}"), Some("billing"), 100 + i)
            .expect("kept while the database is down");
    }
    assert!(store.postgres().unwrap().pending() >= 20);
    // Agent sharing fails instead of waiting (the queue service rings agents without a
    // claim meanwhile), and after one failure it does not try the database again for a
    // while.
    let q = ["support".to_string()];
    let lease = Duration::from_secs(60);
    assert!(store.claim_agent("ann", lease, &q, 0).is_err());
    let asked = Instant::now();
    let err = store
        .claim_agent("ann", lease, &q, 0)
        .unwrap_err()
        .to_string();
    assert!(err.contains("unreachable a moment ago"), "{err}");
    assert!(
        asked.elapsed() < Duration::from_millis(100),
        "{:?}",
        asked.elapsed()
    );
    // Reads fail with a clear error meanwhile (calls treat the caller as unknown).
    let err = store.caller("5552000").unwrap_err().to_string();
    assert!(
        err.contains("PostgreSQL postgres://postgres@127.0.0.1"),
        "{err}"
    );
    pg.up();
    // The retry thread applies them, in order, once the database is back.
    let landed = wait_for(Duration::from_secs(15), || {
        (store.postgres().unwrap().pending() == 0).then_some(())
    });
    assert!(
        landed.is_some(),
        "still {} writes waiting",
        store.postgres().unwrap().pending()
    );
    assert_eq!(
        pg.query("SELECT COUNT(*) FROM callers WHERE number LIKE '55530%'"),
        "20"
    );
    // Agent sharing is back within seconds of the database.
    wait_for(Duration::from_secs(15), || {
        (store.claim_agent("ann", lease, &q, 0).ok() == Some(Claim::Taken)).then_some(())
    })
    .expect("claims work again");
    assert_eq!(
        store
            .caller("5552000")
            .unwrap()
            .unwrap()
            .last_intent
            .as_deref(),
        Some("support")
    );
}

/// Two nodes and one agent: exactly one node holds the agent at a time; the other learns
/// of the release within a second (LISTEN/NOTIFY); an older caller on another live node
/// comes first, for the grace time; a node that dies lets go when its lease runs out; a
/// restarted node drops what it held before.
#[test]
fn one_node_at_a_time_holds_an_agent_and_the_oldest_caller_comes_first() {
    let pg = Postgres::start();
    let a = Store::connect(&pg.url(), "node-a").expect("node a");
    let b = Store::connect(&pg.url(), "node-b").expect("node b");
    let lease = Duration::from_secs(60);
    let q = ["support".to_string()];
    let claim = |s: &Store, agent: &str, joined_ms: i64| {
        s.claim_agent(agent, lease, &q, joined_ms).unwrap()
    };
    assert_eq!(claim(&a, "ann", 0), Claim::Taken);
    assert_eq!(claim(&b, "ann", 0), Claim::Held, "two nodes hold ann");
    // The holder asking again (its next caller) is not held out.
    assert_eq!(claim(&a, "ann", 0), Claim::Taken);
    assert_eq!(b.agents_held_elsewhere().unwrap(), ["ann"]);
    assert!(a.agents_held_elsewhere().unwrap().is_empty());

    let told = Arc::new(AtomicUsize::new(0));
    let t = told.clone();
    b.postgres().unwrap().listen_agents(move || {
        t.fetch_add(1, Ordering::SeqCst);
    });
    wait_for(Duration::from_secs(10), || {
        (told.load(Ordering::SeqCst) >= 1).then_some(())
    })
    .expect("listener connected");
    let before = told.load(Ordering::SeqCst);
    let released = Instant::now();
    a.release_agents(Some(&["ann".to_string()])).unwrap();
    let heard = wait_for(Duration::from_secs(5), || {
        (told.load(Ordering::SeqCst) > before).then(|| released.elapsed())
    })
    .expect("node b heard of the release");
    eprintln!("agent released on a -> notification on b in {heard:?}");
    assert!(heard < Duration::from_secs(1), "{heard:?}");
    assert!(b.agents_held_elsewhere().unwrap().is_empty());

    // Fair order: node b's caller has waited since t=1000 ms; node a's since t=2000 asks
    // for ann and yields, node b's caller gets her. Callers of another queue, or of a node
    // without a heartbeat, do not count.
    b.publish_waiting(
        &[(7, "support".into(), 1000), (8, "sales".into(), 10)],
        &[],
        true,
    )
    .unwrap();
    assert_eq!(
        claim(&a, "ann", 2000),
        Claim::Taken,
        "b has no heartbeat yet"
    );
    a.release_agents(None).unwrap();
    b.heartbeat().unwrap();
    assert_eq!(claim(&a, "ann", 2000), Claim::Yielded);
    assert_eq!(
        claim(&a, "ann", 500),
        Claim::Taken,
        "a's caller was there first"
    );
    a.release_agents(None).unwrap();
    assert_eq!(claim(&a, "ann", 2000), Claim::Yielded);
    assert_eq!(claim(&b, "ann", 1000), Claim::Taken);
    assert_eq!(claim(&a, "ann", 2000), Claim::Held);
    // b's caller is bridged and leaves the line; ann comes free: a's caller gets her.
    b.publish_waiting(&[], &[7], false).unwrap();
    b.release_agents(None).unwrap();
    assert_eq!(claim(&a, "ann", 2000), Claim::Taken);
    a.release_agents(None).unwrap();
    // b's caller still waits but b never asks (its board cannot take ann): a gets ann once
    // the grace (2 s) from its first yield is over, and not before.
    b.publish_waiting(&[(9, "support".into(), 1000)], &[], false)
        .unwrap();
    let first = Instant::now();
    assert_eq!(claim(&a, "ann", 2000), Claim::Yielded);
    let taken = wait_for(Duration::from_secs(10), || {
        (claim(&a, "ann", 2000) == Claim::Taken).then(|| first.elapsed())
    })
    .expect("the grace ran out");
    eprintln!("an older caller elsewhere that never claims holds ann for {taken:?}");
    assert!(taken >= Duration::from_millis(1900), "{taken:?}");
    b.publish_waiting(&[], &[], true).unwrap();

    // A state an admin sets on one node is news for the others.
    let before = told.load(Ordering::SeqCst);
    a.set_agent_state("bob", "away").unwrap();
    wait_for(Duration::from_secs(5), || {
        (told.load(Ordering::SeqCst) > before).then_some(())
    })
    .expect("node b heard of the state change");

    // Node a dies holding ann with a short lease: node b gets her once it runs out, and
    // not before.
    a.claim_agent("ann", Duration::from_millis(800), &q, 0)
        .unwrap();
    let died = Instant::now();
    assert_eq!(claim(&b, "ann", 0), Claim::Held);
    let freed = wait_for(Duration::from_secs(10), || {
        (claim(&b, "ann", 0) == Claim::Taken).then(|| died.elapsed())
    })
    .expect("the lease ran out");
    eprintln!("a dead node's agent free after {freed:?}");
    assert!(freed >= Duration::from_millis(700), "{freed:?}");

    // A node that restarts drops every claim it held.
    assert_eq!(claim(&b, "cy", 0), Claim::Taken);
    b.release_agents(None).unwrap();
    assert_eq!(claim(&a, "ann", 0), Claim::Taken);
    assert_eq!(claim(&a, "cy", 0), Claim::Taken);
    assert_eq!(
        pg.query("SELECT COUNT(*) FROM agent_claims WHERE node = 'node-a'"),
        "2"
    );
}
