//! Writes N key record files into a dir store, with known tokens (issue 5, part 3).
//!
//! `cargo run --release --example genkeys -- --dir D --count N [--tokens-out F] [--tokens K]
//!  [--format yaml|json] [--unknown-out F --unknown K]`
//!
//! Each record is what `keygate keys create` writes (`KeyRecord::to_secret`, role `view`, a
//! name), one file per key named `keygate-<id lowercased>.yaml`. The first K tokens (default
//! 10 000, at most N) go to `--tokens-out`, one per line, so a load generator can present them;
//! `--unknown-out` gets K well-formed tokens whose IDs are in no record. Existing files in the
//! directory are removed first. Prints the time it took.

use std::io::Write as _;
use std::path::PathBuf;
use std::time::Instant;

use keygate::record::{KeyRecord, Role};
use keygate::token::{KeyId, Token};

fn usage() -> ! {
    eprintln!(
        "usage: genkeys --dir D --count N [--tokens-out F] [--tokens K] [--format yaml|json] \
         [--unknown-out F] [--unknown K]"
    );
    std::process::exit(2)
}

fn main() -> anyhow::Result<()> {
    let (mut dir, mut count, mut tokens_out, mut unknown_out) = (None, None, None, None);
    let (mut keep, mut unknown, mut json) = (10_000usize, 10_000usize, false);
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut val = || args.next().unwrap_or_else(|| usage());
        match a.as_str() {
            "--dir" => dir = Some(PathBuf::from(val())),
            "--count" => count = Some(val().parse::<usize>()?),
            "--tokens-out" => tokens_out = Some(PathBuf::from(val())),
            "--tokens" => keep = val().parse()?,
            "--unknown-out" => unknown_out = Some(PathBuf::from(val())),
            "--unknown" => unknown = val().parse()?,
            "--format" => {
                json = match val().as_str() {
                    "json" => true,
                    "yaml" => false,
                    _ => usage(),
                }
            }
            _ => usage(),
        }
    }
    let (Some(dir), Some(count)) = (dir, count) else {
        usage()
    };
    let start = Instant::now();
    if dir.exists() {
        std::fs::remove_dir_all(&dir)?;
    }
    std::fs::create_dir_all(&dir)?;
    let mut tokens = tokens_out
        .as_ref()
        .map(|p| std::fs::File::create(p).map(std::io::BufWriter::new))
        .transpose()?;
    let ext = if json { "json" } else { "yaml" };
    for i in 0..count {
        let token = Token::generate(KeyId::generate());
        let mut rec = KeyRecord::new(token.id.clone(), token.secret_hash(), format!("bench {i}"));
        rec.role = Some(Role::View);
        let secret = rec.to_secret("keygate-system");
        let text = if json {
            serde_json::to_vec(&secret)?
        } else {
            serde_saphyr::to_string(&secret)?.into_bytes()
        };
        std::fs::write(dir.join(format!("{}.{ext}", token.id.record_name())), text)?;
        if let Some(t) = tokens.as_mut().filter(|_| i < keep) {
            writeln!(t, "{}", token.expose())?;
        }
    }
    if let Some(mut t) = tokens {
        t.flush()?;
    }
    if let Some(p) = unknown_out {
        let mut f = std::io::BufWriter::new(std::fs::File::create(p)?);
        for _ in 0..unknown {
            writeln!(f, "{}", Token::generate(KeyId::generate()).expose())?;
        }
        f.flush()?;
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "genkeys: wrote {count} {ext} records to {} in {secs:.2} s ({:.1} µs/key)",
        dir.display(),
        secs * 1e6 / count.max(1) as f64
    );
    Ok(())
}
