//! Token parsing: never panics, accepts exactly `kg_[0-9A-Za-z]{22}_[0-9A-Za-z]{43}`, and a review
//! of any token against an index holding one key authenticates only that key's exact token.
#![no_main]

use std::sync::LazyLock;

use keygate::identity::IdentityPolicy;
use keygate::index::Index;
use keygate::record::KeyRecord;
use keygate::review;
use keygate::token::{self, KeyId, Token};
use libfuzzer_sys::fuzz_target;

fn grammar_accepts(b: &[u8]) -> bool {
    b.len() == 69
        && b.starts_with(b"kg_")
        && b[3..25].iter().all(u8::is_ascii_alphanumeric)
        && b[25] == b'_'
        && b[26..].iter().all(u8::is_ascii_alphanumeric)
}

/// One key whose ID is fixed (so the fuzzer can find it) and whose secret is random.
static KEY: LazyLock<(Index, String)> = LazyLock::new(|| {
    let id: KeyId = "AAAAAAAAAAAAAAAAAAAAAA".parse().unwrap();
    let t = Token::generate(id.clone());
    let index = Index::new(IdentityPolicy::default());
    let rec = KeyRecord::new(id.clone(), t.secret_hash(), "fuzz");
    index.replace_all([(id.key(), Ok(rec))]);
    (index, t.expose())
});

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    let parsed = token::parse_token(s);
    assert_eq!(parsed.is_ok(), grammar_accepts(data), "{s:?}");
    if let Ok(p) = &parsed {
        assert_eq!(p.id, &s[3..25]);
    }
    let (index, good) = &*KEY;
    let d = review::decide(index, s, jiff::Timestamp::now());
    assert_eq!(d.reason.authenticated(), s == good, "{s:?}");
});
