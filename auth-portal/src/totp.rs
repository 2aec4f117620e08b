//! Authenticator-app codes (RFC 6238): SHA-1, 6 digits, 30-second steps, one step of skew either
//! way. Which step a code matched is returned, so the caller can refuse the same step twice.

use totp_rs::{Algorithm, Builder, Secret, Totp};

/// Bytes of a new authenticator secret (160 bits, as RFC 4226 recommends).
pub const SECRET_BYTES: usize = 20;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TotpError {
    #[error("the authenticator secret is not usable")]
    BadSecret,
}

/// A new random secret.
pub fn new_secret() -> Vec<u8> {
    rand::random::<[u8; SECRET_BYTES]>().to_vec()
}

/// The secret as the text an app accepts when scanning fails, in groups of four
/// (`ABCD EFGH …`) to copy it by eye; apps ignore the spaces, and so does the copy button.
pub fn secret_text(secret: &[u8]) -> String {
    let base32 = Secret::new(secret.to_vec().into_boxed_slice()).to_base32();
    let mut grouped = String::with_capacity(base32.len() + base32.len() / 4);
    for (i, c) in base32.chars().enumerate() {
        if i > 0 && i % 4 == 0 {
            grouped.push(' ');
        }
        grouped.push(c);
    }
    grouped
}

fn totp(secret: &[u8], issuer: &str, account: &str) -> Result<Totp, TotpError> {
    Builder::new()
        .with_algorithm(Algorithm::SHA1)
        .with_digits(6)
        .with_skew(1)
        .with_step_duration(30)
        .with_secret(Secret::new(secret.to_vec().into_boxed_slice()))
        .with_issuer(Some(issuer.replace(':', " ")))
        .with_account_name(account.replace(':', " "))
        .build()
        .map_err(|_| TotpError::BadSecret)
}

/// The step (unix time / 30) that `code` matches at `now`, if any.
pub fn matching_step(secret: &[u8], code: &str, now: u64) -> Result<Option<u64>, TotpError> {
    let code = crate::codes::typed_digits(code);
    let code = code.as_ref();
    if code.len() != 6 || !code.bytes().all(|b| b.is_ascii_digit()) {
        return Ok(None);
    }
    Ok(totp(secret, "certgate", "user")?.check(code, now))
}

/// The `otpauth://` URI an authenticator app scans, issuer = the organisation's name.
pub fn provisioning_uri(secret: &[u8], issuer: &str, account: &str) -> Result<String, TotpError> {
    totp(secret, issuer, account)?
        .to_url()
        .map_err(|_| TotpError::BadSecret)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    /// The code `oathtool` (an independent implementation) computes for `secret` at `time`.
    fn oathtool(secret: &[u8], time: u64) -> String {
        let out = std::process::Command::new("oathtool")
            .args(["--totp", "--base32", "--now"])
            .arg(format!("@{time}"))
            .arg(secret_text(secret))
            .output()
            .expect("oathtool (make test installs it)");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap().trim().to_owned()
    }

    #[test]
    fn codes_from_oathtool_match_with_one_step_of_skew() {
        let secret = new_secret();
        let now = 1_700_000_015;
        let step = now / 30;
        let current = oathtool(&secret, now);
        assert_eq!(matching_step(&secret, &current, now).unwrap(), Some(step));
        let previous = oathtool(&secret, now - 30);
        assert_eq!(
            matching_step(&secret, &previous, now).unwrap(),
            Some(step - 1)
        );
        let next = oathtool(&secret, now + 30);
        assert_eq!(matching_step(&secret, &next, now).unwrap(), Some(step + 1));
        let too_old = oathtool(&secret, now - 90);
        if too_old != current && too_old != previous && too_old != next {
            assert_eq!(matching_step(&secret, &too_old, now).unwrap(), None);
        }
        // As the app shows it, or typed with a dash.
        let (left, right) = current.split_at(3);
        for typed in [format!("{left} {right}"), format!("{left}-{right}")] {
            assert_eq!(matching_step(&secret, &typed, now).unwrap(), Some(step));
        }
        assert_eq!(matching_step(&secret, "12345", now).unwrap(), None);
        assert_eq!(matching_step(&secret, "abcdef", now).unwrap(), None);
    }

    #[test]
    fn the_provisioning_uri_names_the_organisation() {
        let secret = b"12345678901234567890";
        let uri = provisioning_uri(secret, "Zorggroep Noord", "anna@noord.example").unwrap();
        assert!(
            uri.starts_with("otpauth://totp/Zorggroep%20Noord:anna%40noord.example?"),
            "{uri}"
        );
        assert!(
            uri.contains("secret=GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ"),
            "{uri}"
        );
        assert!(uri.contains("issuer=Zorggroep%20Noord"), "{uri}");
    }
}

/// Accepts an authenticator code for `account` at most once per step, across all instances:
/// the matched step is claimed atomically in the shared store.
pub async fn accept(
    store: &certgate_store::Store,
    account: &str,
    secret: &[u8],
    code: &str,
    now: u64,
) -> Result<bool, AcceptError> {
    let Some(step) = matching_step(secret, code, now)? else {
        return Ok(false);
    };
    // Long enough to outlive the skew window in which the step could be offered again.
    let claim = certgate_store::RateLimit {
        limit: 1,
        window: std::time::Duration::from_secs(120),
    };
    let first = store
        .hit("totp-step", &format!("{account}:{step}"), claim)
        .await?;
    Ok(first.allowed)
}

/// Why a code could not be checked (not: that it was wrong).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AcceptError {
    #[error(transparent)]
    Secret(#[from] TotpError),
    #[error(transparent)]
    Store(#[from] certgate_store::StoreError),
}

#[cfg(test)]
mod replay_tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use std::sync::Arc;

    use certgate_store::{MemoryStore, Store, SystemClock};

    use super::*;

    #[tokio::test]
    async fn a_step_is_never_accepted_twice() {
        let store = Store::Memory(Arc::new(MemoryStore::new(Arc::new(SystemClock))));
        let secret = new_secret();
        let now = 1_700_000_015;
        let totp = Builder::new()
            .with_algorithm(Algorithm::SHA1)
            .with_digits(6)
            .with_step_duration(30)
            .with_secret(Secret::new(secret.clone().into_boxed_slice()))
            .with_account_name("x")
            .build()
            .unwrap();
        let code = totp.generate(now).to_string();
        assert!(accept(&store, "acc-1", &secret, &code, now).await.unwrap());
        assert!(
            !accept(&store, "acc-1", &secret, &code, now + 5)
                .await
                .unwrap(),
            "the same step again"
        );
        assert!(
            accept(&store, "acc-2", &secret, &code, now).await.unwrap(),
            "per account"
        );
        assert!(
            !accept(&store, "acc-1", &secret, "000000", now)
                .await
                .unwrap()
                || code == "000000"
        );
    }
}
