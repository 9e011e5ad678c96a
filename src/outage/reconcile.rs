//! How the board's outages follow their sources and the clock: which outages a source's
//! new list starts and stops, which have expired, and whether the set callers hear changed.

use super::{OutageMap, OutageSet, OutageSpec, Source};

/// What makes one source's outages exactly its new list.
#[derive(Debug, Default, PartialEq)]
pub struct SyncPlan {
    /// New or changed outages of this source.
    pub start: Vec<OutageSpec>,
    /// Outages of this source no longer in its list.
    pub stop: Vec<String>,
    /// Ids in the list already started through another source (left alone, reported).
    pub foreign: Vec<(String, Source)>,
}

/// The plan that makes the outages of `source` exactly `wanted` (the watched file owns its
/// outages: an entry removed from the file ends the outage).
pub fn sync_source(existing: &OutageMap, source: Source, wanted: &[OutageSpec]) -> SyncPlan {
    let mut plan = SyncPlan::default();
    for spec in wanted {
        match existing.get(&spec.id) {
            Some(o) if o.source != source => plan.foreign.push((spec.id.clone(), o.source)),
            Some(o) if o.spec == *spec => {}
            _ => plan.start.push(spec.clone()),
        }
    }
    let mut gone: Vec<String> = existing
        .values()
        .filter(|o| o.source == source && !wanted.iter().any(|w| w.id == o.spec.id))
        .map(|o| o.spec.id.clone())
        .collect();
    gone.sort();
    plan.stop = gone;
    plan
}

/// Outages whose `expires_at` has passed at `now`, by id.
pub fn expired(existing: &OutageMap, now: u64) -> Vec<String> {
    let mut ids: Vec<String> = existing
        .values()
        .filter(|o| o.spec.expires_at.is_some_and(|e| e <= now))
        .map(|o| o.spec.id.clone())
        .collect();
    ids.sort();
    ids
}

/// Whether the outages active at `now` differ from the set callers hear (one started on
/// its schedule, or ended).
pub fn needs_publish(existing: &OutageMap, published: &OutageSet, now: u64) -> bool {
    let active: Vec<&str> = existing
        .values()
        .filter(|o| o.is_active(now))
        .map(|o| o.spec.id.as_str())
        .collect();
    active.len() != published.len()
        || !published
            .items
            .iter()
            .all(|a| active.contains(&a.outage.spec.id.as_str()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::outage::tests::{ann, spec};
    use crate::outage::Outage;

    fn map(items: &[(OutageSpec, Source)]) -> OutageMap {
        items
            .iter()
            .map(|(s, source)| {
                (
                    s.id.clone(),
                    Outage {
                        spec: s.clone(),
                        source: *source,
                        updated_at: 0,
                        updated_by: "t".into(),
                    },
                )
            })
            .collect()
    }

    #[test]
    fn a_source_starts_what_is_new_or_changed_and_stops_what_it_dropped() {
        let mut changed = spec("b", &["all"]);
        changed.callback = true;
        let existing = map(&[
            (spec("a", &["all"]), Source::File),
            (spec("b", &["all"]), Source::File),
            (spec("c", &["all"]), Source::File),
            (spec("api-1", &["all"]), Source::Api),
        ]);
        let wanted = [spec("a", &["all"]), changed.clone(), spec("d", &["all"])];
        let plan = sync_source(&existing, Source::File, &wanted);
        assert_eq!(plan.start, vec![changed, spec("d", &["all"])]);
        assert_eq!(
            plan.stop,
            ["c"],
            "the API's outage is not the file's to stop"
        );
        assert!(plan.foreign.is_empty());
    }

    #[test]
    fn an_id_owned_by_another_source_is_left_alone() {
        let existing = map(&[(spec("x", &["all"]), Source::Api)]);
        let plan = sync_source(&existing, Source::File, &[spec("x", &["billing"])]);
        assert!(plan.start.is_empty() && plan.stop.is_empty());
        assert_eq!(plan.foreign, [("x".to_string(), Source::Api)]);
    }

    #[test]
    fn expiry_and_scheduled_starts_change_what_callers_hear() {
        let mut later = spec("later", &["all"]);
        later.starts_at = Some(100);
        let mut ending = spec("ending", &["all"]);
        ending.expires_at = Some(50);
        let existing = map(&[(later, Source::Api), (ending.clone(), Source::Api)]);
        assert_eq!(expired(&existing, 49), Vec::<String>::new());
        assert_eq!(expired(&existing, 50), ["ending"]);
        let heard_now = OutageSet::active(vec![ann(ending)], 10);
        assert!(!needs_publish(&existing, &heard_now, 10));
        assert!(
            needs_publish(&existing, &heard_now, 100),
            "'later' has started"
        );
    }
}
