use super::*;
use crate::fixtures::{record, sealed, sealer};
use crate::identity::IdentityPolicy;
use crate::token::KeyId;

/// Far above the clock in microseconds, so the sealer uses exactly these.
const S5: u64 = u64::MAX / 2;

fn sealing() -> (Index, crate::seal::Sealer) {
    let sealer = sealer();
    let index = Index::new(IdentityPolicy::default());
    index.set_verifier(sealer.verifier());
    (index, sealer)
}

fn refusal(index: &Index, k: &IdKey) -> Option<RecordError> {
    match index.get(k) {
        Some(Entry::Invalid(e)) => Some((*e).clone()),
        _ => None,
    }
}

fn usable(index: &Index, k: &IdKey) -> bool {
    matches!(index.get(k), Some(Entry::Key(_)))
}

#[test]
fn an_older_seq_is_refused_until_a_higher_one_arrives() {
    let (index, sealer) = sealing();
    let id = KeyId::generate();
    let k = id.key();
    let mut rec = record(&id);
    let enabled = sealed(&sealer, &rec, "u", Some(S5));
    index.upsert_watched(k, index.check(&enabled));
    assert!(usable(&index, &k));
    rec.disabled = true;
    index.upsert_watched(k, index.check(&sealed(&sealer, &rec, "u", Some(S5 + 1))));
    // The copy from before the disable is brought back.
    index.upsert_watched(k, index.check(&enabled));
    assert_eq!(
        refusal(&index, &k),
        Some(RecordError::Seal(SealFailure::Rollback {
            seen: S5 + 1,
            got: S5
        }))
    );
    rec.disabled = false;
    index.upsert_watched(k, index.check(&sealed(&sealer, &rec, "u", Some(S5 + 2))));
    assert!(usable(&index, &k));
    // Deleted: the mark goes with it (a record restored later has another uid anyway).
    index.remove(&k);
    index.upsert_watched(k, index.check(&enabled));
    assert!(usable(&index, &k));
}

#[test]
fn unsealed_and_forged_records_are_refused() {
    let (index, sealer) = sealing();
    let id = KeyId::generate();
    let k = id.key();
    let mut plain = record(&id).to_secret("ns");
    plain.metadata.uid = Some("u".into());
    index.upsert_watched(k, index.check(&plain));
    assert_eq!(
        refusal(&index, &k),
        Some(RecordError::Seal(SealFailure::Unsealed))
    );
    let mut forged = sealed(&sealer, &record(&id), "u", None);
    forged
        .string_data
        .as_mut()
        .unwrap()
        .insert("role".into(), "admin".into());
    index.upsert_watched(k, index.check(&forged));
    assert_eq!(
        refusal(&index, &k),
        Some(RecordError::Seal(SealFailure::Invalid))
    );
    // Without a verifier the same Secret is a plain record.
    let open = Index::new(IdentityPolicy::default());
    open.upsert_watched(k, open.check(&forged));
    assert!(usable(&open, &k));
}

#[test]
fn watch_history_older_than_a_direct_read_is_skipped_not_refused() {
    let (index, sealer) = sealing();
    let id = KeyId::generate();
    let k = id.key();
    // The API creates the Secret (unsealed), then seals it; the webhook reads it directly
    // before its watch has delivered either event.
    let mut created = record(&id).to_secret("ns");
    created.metadata.uid = Some("u".into());
    let sealed_now = sealed(&sealer, &record(&id), "u", Some(S5));
    let c = index.check(&sealed_now);
    assert!(index.upsert_read(k, c.parsed.unwrap(), c.seq, None));
    index.upsert_watched(k, index.check(&created));
    assert!(usable(&index, &k), "the older, unsealed create is history");
    index.upsert_watched(k, index.check(&sealed_now));
    assert!(usable(&index, &k));
    // The watch caught up: from now on an older copy is a rollback again.
    let older = sealed(&sealer, &record(&id), "u", Some(S5 - 1));
    index.upsert_watched(k, index.check(&older));
    assert!(matches!(
        refusal(&index, &k),
        Some(RecordError::Seal(SealFailure::Rollback { .. }))
    ));
}

#[test]
fn a_direct_read_never_overrides_what_the_index_moved_to() {
    let (index, sealer) = sealing();
    let id = KeyId::generate();
    let k = id.key();
    let mut rec = record(&id);
    let before = index.get(&k);
    // While the read was under way, the watch delivered a disable with a higher seq.
    rec.disabled = true;
    index.upsert_watched(k, index.check(&sealed(&sealer, &rec, "u", Some(S5 + 1))));
    rec.disabled = false;
    let c = index.check(&sealed(&sealer, &rec, "u", Some(S5)));
    assert!(!index.upsert_read(k, c.parsed.unwrap(), c.seq, before.as_ref()));
    let now = index.get(&k);
    // Even when the entry is the same one, a seq not above the mark is not applied.
    let c = index.check(&sealed(&sealer, &rec, "u", Some(S5 + 1)));
    assert!(!index.upsert_read(k, c.parsed.unwrap(), c.seq, now.as_ref()));
    match index.get(&k) {
        Some(Entry::Key(key)) => assert!(key.disabled),
        other => panic!("{other:?}"),
    }
    let c = index.check(&sealed(&sealer, &rec, "u", Some(S5 + 2)));
    assert!(index.upsert_read(k, c.parsed.unwrap(), c.seq, now.as_ref()));
}

#[test]
fn a_relist_keeps_a_newer_direct_read_and_drops_marks_of_deleted_keys() {
    let (index, sealer) = sealing();
    let (a, b) = (KeyId::generate(), KeyId::generate());
    let c = index.check(&sealed(&sealer, &record(&a), "u", Some(S5 + 1)));
    assert!(index.upsert_read(a.key(), c.parsed.unwrap(), c.seq, None));
    let old = index.check(&sealed(&sealer, &record(&a), "u", Some(S5)));
    let kept = index.relisted_entry(&a.key(), old).unwrap();
    assert!(matches!(kept, Entry::Key(_)));
    index.replace_entries([(a.key(), kept)]);
    assert!(usable(&index, &a.key()));
    let c = index.check(&sealed(&sealer, &record(&b), "u", Some(S5)));
    index.upsert_watched(b.key(), c);
    index.replace_entries([]);
    assert!(index.marks().is_empty());
}
