use std::path::Path;

use k8s_openapi::ByteString;

use super::*;
use crate::record::KeyRecord;
use crate::token::KeyId;

fn sealer() -> Sealer {
    let (key, _) = generate().unwrap();
    Sealer::from_pem(key.as_bytes(), Path::new("k"), "--flag").unwrap()
}

/// A full record as the API server returns it: `data` (bytes), a uid.
fn stored(record: &KeyRecord, uid: &str) -> Secret {
    let mut s = record.to_secret("keygate-system");
    let sd = s.string_data.take().unwrap();
    s.data = Some(
        sd.into_iter()
            .map(|(k, v)| (k, ByteString(v.into_bytes())))
            .collect(),
    );
    s.metadata.uid = Some(uid.to_owned());
    s
}

fn full() -> KeyRecord {
    canonical::tests::full_record()
}

#[test]
fn a_sealed_record_verifies_and_carries_its_seq() {
    let sealer = sealer();
    let verifier = sealer.verifier();
    let mut s = stored(&full(), "uid-1");
    assert_eq!(
        verifier.check(&s).unwrap_err(),
        RecordError::Seal(SealFailure::Unsealed)
    );
    let seq = sealer.seal(&mut s, None).unwrap();
    let (record, got) = verifier.check(&s).unwrap();
    assert_eq!((record, got), (full(), seq));
    assert_eq!(seq_of(&s), Some(seq));
    // Sealing again (the next write) always increases the seq, even within one microsecond.
    let again = sealer.seal(&mut s, None).unwrap();
    assert!(again > seq);
    assert_eq!(verifier.check(&s).unwrap().1, again);
    // An update renders the record afresh (no seal fields) over the stored object: the seq
    // follows the stored one even when another writer's clock ran far ahead.
    let mut stored_ahead = s.clone();
    stored_ahead
        .string_data
        .as_mut()
        .unwrap()
        .insert(FIELD_SEQ.into(), (u64::MAX / 2).to_string());
    let mut update = full().to_secret("keygate-system");
    update.metadata.uid = Some("uid-1".into());
    let next = sealer.seal(&mut update, Some(&stored_ahead)).unwrap();
    assert_eq!(next, u64::MAX / 2 + 1);
    assert_eq!(verifier.check(&update).unwrap().1, next);
}

#[test]
fn every_field_of_the_record_is_sealed() {
    let sealer = sealer();
    let verifier = sealer.verifier();
    let mut sealed = stored(&full(), "uid-1");
    sealer.seal(&mut sealed, None).unwrap();
    for (what, edit) in canonical::tests::edits() {
        let mut r = full();
        edit(&mut r);
        // A Secret-writer rewrites the record but keeps the seal fields it read.
        let mut forged = stored(&r, "uid-1");
        forged.string_data = sealed.string_data.clone();
        match KeyRecord::from_secret(&forged) {
            // An edit that makes the record unparsable (an ID not matching the name) is refused
            // anyway; every other edit must fail the seal.
            Ok(parsed) => assert_eq!(
                verifier.verify(&forged, &parsed),
                Err(SealFailure::Invalid),
                "{what}"
            ),
            Err(e) => assert!(matches!(e, RecordError::NameMismatch { .. }), "{what}: {e}"),
        }
    }
}

#[test]
fn the_seal_is_bound_to_the_uid_name_and_seq() {
    let sealer = sealer();
    let verifier = sealer.verifier();
    let mut s = stored(&full(), "uid-1");
    sealer.seal(&mut s, None).unwrap();
    // Restored from a backup: the API server gives the new object a new uid.
    let mut restored = s.clone();
    restored.metadata.uid = Some("uid-2".into());
    assert_eq!(
        verifier.check(&restored).unwrap_err(),
        RecordError::Seal(SealFailure::Invalid)
    );
    let mut no_uid = s.clone();
    no_uid.metadata.uid = None;
    assert_eq!(
        verifier.check(&no_uid).unwrap_err(),
        RecordError::Seal(SealFailure::NoUid)
    );
    // A different seq (to dodge the webhook's high-water mark) breaks the signature.
    let mut bumped = s.clone();
    let seq = seq_of(&s).unwrap();
    bumped
        .string_data
        .as_mut()
        .unwrap()
        .insert(FIELD_SEQ.into(), (seq + 1).to_string());
    assert_eq!(
        verifier.check(&bumped).unwrap_err(),
        RecordError::Seal(SealFailure::Invalid)
    );
    // A copy of a real record under another key's name and ID.
    let other = KeyId::generate();
    let mut r = full();
    r.id = other.clone();
    let mut copy = stored(&r, "uid-1");
    copy.string_data = s.string_data.clone();
    let parsed = KeyRecord::from_secret(&copy).unwrap();
    assert_eq!(verifier.verify(&copy, &parsed), Err(SealFailure::Invalid));
}

#[test]
fn another_key_cannot_seal_and_rotation_trusts_several() {
    let (ours, other) = (sealer(), sealer());
    let mut s = stored(&full(), "uid-1");
    other.seal(&mut s, None).unwrap();
    assert_eq!(
        ours.verifier().check(&s).unwrap_err(),
        RecordError::Seal(SealFailure::Invalid)
    );
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("a.key"), dir.path().join("b.key"));
    let (pa, pb) = (dir.path().join("a.pub"), dir.path().join("b.pub"));
    write_key_pair(&a, &pa).unwrap();
    write_key_pair(&b, &pb).unwrap();
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&a).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "the private key is the owner's alone");
    let both = [std::fs::read(&pa).unwrap(), std::fs::read(&pb).unwrap()].concat();
    let verifier = Verifier::from_pem(&both, Path::new("both"), "--record-verify-key").unwrap();
    for key in [&a, &b] {
        let mut s = stored(&full(), "uid-1");
        Sealer::load(key, "--record-signing-key")
            .unwrap()
            .seal(&mut s, None)
            .unwrap();
        assert!(verifier.check(&s).is_ok());
    }
}

#[test]
fn key_files_that_are_not_ed25519_keys_are_refused_naming_the_flag() {
    let (key, public) = generate().unwrap();
    let e = Verifier::from_pem(key.as_bytes(), Path::new("x.pem"), "--record-verify-key")
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("--record-verify-key") && e.contains("x.pem"),
        "{e}"
    );
    let e = Sealer::from_pem(
        public.as_bytes(),
        Path::new("y.pem"),
        "--record-signing-key",
    )
    .err()
    .unwrap()
    .to_string();
    assert!(e.contains("--record-signing-key"), "{e}");
    assert!(Verifier::from_pem(b"", Path::new("z"), "f").is_err());
    // openssl's PKCS#8 v1 form (no public key inside) is accepted.
    let v1 = "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIB0yFzNSsgtHpYAH0kHDE/tzQbGKtUhXeALN8AUbyVh1\n-----END PRIVATE KEY-----\n";
    assert!(Sealer::from_pem(v1.as_bytes(), Path::new("v1"), "f").is_ok());
}

#[test]
fn sealing_needs_a_valid_record_with_a_uid() {
    let sealer = sealer();
    let mut s = full().to_secret("ns");
    assert!(matches!(sealer.seal(&mut s, None), Err(SealError::NoUid)));
    s.metadata.uid = Some("u".into());
    s.string_data
        .as_mut()
        .unwrap()
        .insert("role".into(), "root".into());
    assert!(matches!(
        sealer.seal(&mut s, None),
        Err(SealError::Record { .. })
    ));
}
