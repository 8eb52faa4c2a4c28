//! Errors as an operator reads them: the whole cause chain with each cause once, what to fix
//! for errors talking to the API server, and repeated identical failures logged with backoff
//! instead of at every retry.

use std::error::Error;
use std::fmt;
use std::time::{Duration, Instant};

/// Displays an error followed by its causes (`Error::source`, recursively) joined with `": "`.
/// A cause whose text is already printed is skipped: many libraries put their cause in their
/// own message and also return it as the source.
pub struct Chain<'a>(pub &'a (dyn Error + 'static));

impl fmt::Display for Chain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut printed = self.0.to_string();
        let mut cause = self.0.source();
        while let Some(e) = cause {
            let text = e.to_string();
            if !text.is_empty() && !printed.contains(&text) {
                printed.push_str(": ");
                printed.push_str(&text);
            }
            cause = e.source();
        }
        f.write_str(&printed)
    }
}

/// The error and its causes, as one line.
pub fn chain(e: &(dyn Error + 'static)) -> String {
    Chain(e).to_string()
}

/// What to fix for an error from a Kubernetes client, from the first cause that tells.
pub fn kube_fix(e: &(dyn Error + 'static)) -> &'static str {
    let mut cause = Some(e);
    while let Some(e) = cause {
        if let Some(fix) = fix_for(e) {
            return fix;
        }
        cause = e.source();
    }
    "check the server URL, --context and credentials in the kubeconfig (--kubeconfig, \
     $KUBECONFIG), and that the API server is reachable from here"
}

fn fix_for(e: &(dyn Error + 'static)) -> Option<&'static str> {
    if let Some(tls) = tls_error(e) {
        return Some(match tls {
            rustls::Error::InvalidCertificate(_) => {
                "the API server's certificate was refused: check the server URL and \
                 certificate-authority(-data) in the kubeconfig; the server must present a \
                 serving certificate issued by that CA for that address, not the CA \
                 certificate itself (kubectl tolerates that, keygate does not)"
            }
            _ => {
                "the TLS connection to the API server failed: check the server URL and \
                 certificate-authority(-data) in the kubeconfig"
            }
        });
    }
    if let Some(io) = e.downcast_ref::<std::io::Error>() {
        use std::io::ErrorKind::*;
        return match io.kind() {
            ConnectionRefused => Some(
                "nothing accepts connections at the kubeconfig's server URL: check the URL and \
                 that kube-apiserver runs there",
            ),
            TimedOut => Some(
                "the API server did not answer in time: check the server URL and the network \
                 path to it",
            ),
            _ => None,
        };
    }
    match e.downcast_ref::<kube::Error>() {
        Some(kube::Error::Api(s)) if s.code == 401 => Some(
            "the API server refused the credentials: check the user of the kubeconfig \
             (--kubeconfig, --context), e.g. an expired token or certificate",
        ),
        Some(kube::Error::Api(s)) if s.code == 403 => Some(
            "RBAC refused: keygate serve needs list and watch on Secrets in the key namespace \
             (manifests/base, Role keygate); check --namespace and the kubeconfig's user",
        ),
        _ => None,
    }
}

/// A TLS failure in `e`. An io::Error shows its inner error's text but returns that error's
/// source, so a rustls::Error inside (possibly nested) io::Errors is only found through
/// `get_ref`.
fn tls_error<'e>(e: &'e (dyn Error + 'static)) -> Option<&'e rustls::Error> {
    let mut e = e;
    loop {
        if let Some(tls) = e.downcast_ref::<rustls::Error>() {
            return Some(tls);
        }
        let inner = e.downcast_ref::<std::io::Error>()?.get_ref()?;
        e = inner;
    }
}

/// Decides when a failure that keeps happening is logged: the first time at once, then the
/// same failure again only after an interval that doubles each time (up to `max`), with the
/// count so far. A different failure is logged at once and starts over.
#[derive(Debug)]
pub struct Repeats {
    first: Duration,
    max: Duration,
    streak: Option<Streak>,
}

#[derive(Debug)]
struct Streak {
    message: String,
    /// Failures in a row, identical or not.
    failures: u64,
    next: Instant,
    interval: Duration,
}

impl Repeats {
    pub fn new(first: Duration, max: Duration) -> Self {
        Repeats {
            first,
            max,
            streak: None,
        }
    }

    /// A failure with this message, at `now`. `Some(n)`: log it, it is the n-th failure in a
    /// row; `None`: stay quiet.
    pub fn failure(&mut self, message: &str, now: Instant) -> Option<u64> {
        let first = self.first;
        match &mut self.streak {
            Some(s) if s.message == message => {
                s.failures += 1;
                if now < s.next {
                    return None;
                }
                s.interval = (s.interval * 2).min(self.max);
                s.next = now + s.interval;
                Some(s.failures)
            }
            other => {
                let failures = other.as_ref().map_or(0, |s| s.failures) + 1;
                *other = Some(Streak {
                    message: message.to_owned(),
                    failures,
                    next: now + first,
                    interval: first,
                });
                Some(failures)
            }
        }
    }

    /// The operation succeeded: how many failures came before it, if any (to log the
    /// recovery), and the next failure is logged at once.
    pub fn success(&mut self) -> Option<u64> {
        self.streak.take().map(|s| s.failures)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct E(&'static str, Option<Box<E>>);
    impl fmt::Display for E {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str(self.0)
        }
    }
    impl Error for E {
        fn source(&self) -> Option<&(dyn Error + 'static)> {
            self.1.as_deref().map(|e| e as &(dyn Error + 'static))
        }
    }

    #[test]
    fn chain_prints_every_cause_once() {
        let e = E(
            "HyperError: client error (Connect)",
            Some(Box::new(E(
                "client error (Connect)",
                Some(Box::new(E(
                    "invalid peer certificate: CaUsedAsEndEntity",
                    None,
                ))),
            ))),
        );
        assert_eq!(
            chain(&e),
            "HyperError: client error (Connect): invalid peer certificate: CaUsedAsEndEntity"
        );
        assert_eq!(chain(&E("alone", None)), "alone");
    }

    #[test]
    fn tls_inside_io_gets_the_certificate_fix() {
        let tls = rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer);
        // As the connector reports it: an io::Error in an io::Error.
        let io = std::io::Error::other(std::io::Error::new(std::io::ErrorKind::InvalidData, tls));
        let e = E("client error (Connect)", None);
        assert!(
            kube_fix(&io).contains("certificate-authority"),
            "{}",
            kube_fix(&io)
        );
        assert!(kube_fix(&e).contains("--kubeconfig"));
        let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        assert!(kube_fix(&refused).contains("kube-apiserver runs there"));
    }

    #[test]
    fn identical_failures_are_logged_at_growing_intervals_with_a_count() {
        let t0 = Instant::now();
        let s = Duration::from_secs;
        let mut r = Repeats::new(s(10), s(40));
        // A failure every second for two minutes: logged at 0, 10, 30, 70, 110 s.
        let logged: Vec<(u64, u64)> = (0..120)
            .filter_map(|i| r.failure("boom", t0 + s(i)).map(|n| (i, n)))
            .collect();
        assert_eq!(
            logged,
            [(0, 1), (10, 11), (30, 31), (70, 71), (110, 111)],
            "first at once, then after 10, 20, 40, 40 s (the cap)"
        );
        // Another failure is news: logged at once, the streak goes on counting.
        assert_eq!(r.failure("other", t0 + s(120)), Some(121));
        assert_eq!(r.failure("other", t0 + s(121)), None);
        // Success ends the streak; the next failure is logged at once.
        assert_eq!(r.success(), Some(122));
        assert_eq!(r.success(), None);
        assert_eq!(r.failure("other", t0 + s(122)), Some(1));
    }
}
