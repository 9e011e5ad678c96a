//! The PostgreSQL back end against a real PostgreSQL 15 (a cluster of the test's own): two
//! stores on one database behave as two ivrd nodes would. Migrations taken once when nodes
//! start together; an outage written by one reaches the other's listener within a second;
//! one kept place per number per queue whichever node took it, and exactly one node claims
//! a call back; a call's writes made while the database is down land once it is back.

mod support;

use ivrd::outage::{Outage, OutageSpec, Source};
use ivrd::store::{Kept, Store};
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
/// of the release within a second (LISTEN/NOTIFY); a node that dies lets go when its
/// lease runs out; a restarted node drops what it held before.
#[test]
fn one_node_at_a_time_holds_an_agent() {
    let pg = Postgres::start();
    let a = Store::connect(&pg.url(), "node-a").expect("node a");
    let b = Store::connect(&pg.url(), "node-b").expect("node b");
    let lease = Duration::from_secs(60);
    assert!(a.claim_agent("ann", lease).unwrap());
    assert!(!b.claim_agent("ann", lease).unwrap(), "two nodes hold ann");
    // Renewing one's own claim is a claim too.
    assert!(a.claim_agent("ann", lease).unwrap());
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
    assert!(b.claim_agent("ann", lease).unwrap());
    assert!(!a.claim_agent("ann", lease).unwrap());

    // A state an admin sets on one node is news for the others.
    let before = told.load(Ordering::SeqCst);
    a.set_agent_state("bob", "away").unwrap();
    wait_for(Duration::from_secs(5), || {
        (told.load(Ordering::SeqCst) > before).then_some(())
    })
    .expect("node b heard of the state change");

    // Node b dies holding ann with a short lease: node a gets her once it runs out, and
    // not before.
    b.claim_agent("ann", Duration::from_millis(800)).unwrap();
    let died = Instant::now();
    assert!(!a.claim_agent("ann", lease).unwrap());
    let freed = wait_for(Duration::from_secs(10), || {
        a.claim_agent("ann", lease).unwrap().then(|| died.elapsed())
    })
    .expect("the lease ran out");
    eprintln!("a dead node's agent free after {freed:?}");
    assert!(freed >= Duration::from_millis(700), "{freed:?}");

    // A node that restarts drops every claim it held.
    assert!(a.claim_agent("cy", lease).unwrap());
    a.release_agents(None).unwrap();
    assert!(b.claim_agent("ann", lease).unwrap() && b.claim_agent("cy", lease).unwrap());
    assert_eq!(pg.query("SELECT COUNT(*) FROM agent_claims"), "2");
}
