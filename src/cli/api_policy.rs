//! `keygate serve` flags that set the AccessKey API's key policy ([`ApiSettings`]), apart from
//! the listener's flags.

use clap::Args;

use super::HumanDuration;
use crate::api::ApiSettings;

#[derive(Debug, Args)]
pub struct ApiPolicyArgs {
    /// The longest a key minted through the AccessKey API may live, e.g. 90d: a key created
    /// without an expiration expires after this, and a later expiration is refused (422)
    /// naming this value. Default: no maximum.
    #[arg(
        long,
        env = "KEYGATE_MAX_KEY_LIFETIME",
        value_name = "DURATION",
        value_parser = lifetime
    )]
    pub max_key_lifetime: Option<HumanDuration>,
}

fn lifetime(s: &str) -> Result<HumanDuration, String> {
    let d: HumanDuration = s.parse()?;
    if d.0.is_zero() {
        return Err(format!(
            "{s:?}: a key lifetime must be longer than 0; leave --max-key-lifetime out for none"
        ));
    }
    Ok(d)
}

impl ApiPolicyArgs {
    /// Puts these flags into the API's settings.
    pub fn apply(&self, settings: &mut ApiSettings) {
        settings.max_key_lifetime = self.max_key_lifetime.map(|d| d.0);
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use crate::cli::{Cli, Command};

    fn lifetime_of(args: &[&str]) -> Result<Option<std::time::Duration>, String> {
        let argv = ["keygate", "serve"].iter().chain(args);
        let cli = Cli::try_parse_from(argv).map_err(|e| e.to_string())?;
        let Command::Serve(s) = cli.command else {
            unreachable!()
        };
        let mut settings = crate::api::ApiSettings::new("ns", "p-");
        s.api.api_policy.apply(&mut settings);
        Ok(settings.max_key_lifetime)
    }

    #[test]
    fn max_key_lifetime_reaches_the_api_settings() {
        assert_eq!(lifetime_of(&[]).unwrap(), None);
        let d = lifetime_of(&["--max-key-lifetime", "30d"]).unwrap();
        assert_eq!(d, Some(std::time::Duration::from_secs(30 * 86_400)));
        let e = lifetime_of(&["--max-key-lifetime", "0s"]).unwrap_err();
        assert!(e.contains("longer than 0"), "{e}");
    }
}
