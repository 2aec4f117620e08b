//! Passwords: argon2id hashes in PHC format, verification in constant time, and a stand-in
//! verification for unknown accounts so a sign-in takes as long whether or not the account
//! exists.

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};

/// The shortest password certgate accepts (NIST SP 800-63B: at least 8; long passphrases are
/// welcome).
pub const MIN_LENGTH: usize = 8;
/// Longer input is refused before hashing, so nobody can make the server hash megabytes.
pub const MAX_LENGTH: usize = 256;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PasswordError {
    #[error("the password must be at least {MIN_LENGTH} characters")]
    TooShort,
    #[error("the password must be at most {MAX_LENGTH} characters")]
    TooLong,
    #[error("the password is one of the most used passwords or words; choose another")]
    Common,
    #[error("the password contains the username; choose another")]
    ContainsUsername,
    #[error(
        "the password is easy to guess (a common word, name, date, sequence or keyboard \
             pattern with few changes); a few unrelated words make a strong one"
    )]
    Guessable,
    #[error("the password could not be hashed")]
    Hashing,
}

/// A user name (or the part of an address before the `@`) this long or longer may not be in
/// the password; a shorter one ("cor", "ann") is part of too many good passphrases to refuse.
const MIN_NAME: usize = 4;

/// Words every password guesser tries first here, besides the built-in lists (which are
/// English): Dutch for "password", "welcome", "secret" and the like, and the product's name.
const LOCAL_WORDS: &[&str] = &[
    "certgate",
    "wachtwoord",
    "welkom",
    "geheim",
    "inloggen",
    "gebruiker",
    "beheerder",
    "zorg",
    "kinderopvang",
    "zomer",
    "winter",
    "lente",
    "herfst",
];

/// Whether `password` may be chosen by `username` (NIST SP 800-63B, 5.1.1.2): at least
/// [`MIN_LENGTH`] characters, not a common or breached password (zxcvbn's lists, shipped in the
/// binary: no network look-up), not containing the username, and not easy to guess from words,
/// names, dates, sequences and keyboard patterns. No rules on character classes.
/// `context` adds words of the place (the organisation's name) that make a password guessable.
pub fn check_new(password: &str, username: &str, context: &[&str]) -> Result<(), PasswordError> {
    if password.chars().count() < MIN_LENGTH {
        return Err(PasswordError::TooShort);
    }
    if password.len() > MAX_LENGTH {
        return Err(PasswordError::TooLong);
    }
    let lower = password.to_lowercase();
    let username = username.trim().to_lowercase();
    let local_part = username.split('@').next().unwrap_or_default();
    if [username.as_str(), local_part]
        .iter()
        .any(|name| name.chars().count() >= MIN_NAME && lower.contains(name))
    {
        return Err(PasswordError::ContainsUsername);
    }
    let mut words: Vec<&str> = LOCAL_WORDS.to_vec();
    words.push(&username);
    words.extend(local_part.split(|c: char| !c.is_alphanumeric()));
    words.extend(context.iter().flat_map(|c| c.split_whitespace()));
    words.retain(|w| w.chars().count() >= 3);
    let estimate = zxcvbn::zxcvbn(password, &words);
    let whole_word = matches!(
        estimate.sequence(),
        [only] if matches!(only.pattern, zxcvbn::matching::patterns::MatchPattern::Dictionary(_))
    );
    if whole_word && estimate.score() < zxcvbn::Score::Three {
        return Err(PasswordError::Common);
    }
    if estimate.score() < zxcvbn::Score::Two {
        return Err(PasswordError::Guessable);
    }
    Ok(())
}

/// argon2id with OWASP's recommended minimum (19 MiB, 2 passes, 1 lane).
fn hasher() -> Argon2<'static> {
    let params = Params::new(19 * 1024, 2, 1, None).unwrap_or_default();
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

/// Checks a new password's length and hashes it.
pub fn hash(password: &str) -> Result<String, PasswordError> {
    let length = password.chars().count();
    if length < MIN_LENGTH {
        return Err(PasswordError::TooShort);
    }
    if password.len() > MAX_LENGTH {
        return Err(PasswordError::TooLong);
    }
    let salt =
        SaltString::encode_b64(&rand::random::<[u8; 16]>()).map_err(|_| PasswordError::Hashing)?;
    hasher()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|_| PasswordError::Hashing)
}

/// Whether `password` matches `stored` (a PHC string). With no stored hash (unknown account,
/// or no password set yet) the same work is done against a fixed hash and the answer is false.
pub fn verify(password: &str, stored: Option<&str>) -> bool {
    if password.len() > MAX_LENGTH {
        return false;
    }
    let parsed = stored.and_then(|s| PasswordHash::new(s).ok());
    match parsed {
        Some(hash) => hasher().verify_password(password.as_bytes(), &hash).is_ok(),
        None => {
            let _ = PasswordHash::new(STAND_IN)
                .map(|hash| hasher().verify_password(password.as_bytes(), &hash).is_ok());
            false
        }
    }
}

/// The hash of a random password nobody knows, with the same parameters as real ones.
const STAND_IN: &str =
    "$argon2id$v=19$m=19456,t=2,p=1$c3RhbmQtaW4tc2FsdA$3Jq9m1G0m0hM0WUQ8JbWb1r7c9k6m8mNn0m5lDqNq8w";

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn hashes_verify_and_are_argon2id() {
        let stored = hash("correct horse battery").unwrap();
        assert!(stored.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"));
        assert!(verify("correct horse battery", Some(&stored)));
        assert!(!verify("correct horse batterY", Some(&stored)));
        assert_ne!(stored, hash("correct horse battery").unwrap(), "salted");
    }

    #[test]
    fn new_passwords_follow_nist_800_63b() {
        let check = |p: &str| check_new(p, "anna@noord.test", &["Zorggroep Noord"]);
        // Long passphrases and unremarkable passwords of any characters are welcome.
        for good in [
            "correct horse battery",
            "a brand new passphrase",
            "Tulpen in de vensterbank",
            "kM7#qv2Lp",
            &"lange zin ".repeat(25),
        ] {
            assert_eq!(check(good), Ok(()), "{good:?}");
        }
        assert_eq!(check("Ab3$efg"), Err(PasswordError::TooShort));
        assert_eq!(
            check(&"x".repeat(MAX_LENGTH + 1)),
            Err(PasswordError::TooLong)
        );
        // The most used and breached ones, whatever their length.
        for common in [
            "1234567890",
            "password1",
            "P@ssw0rd",
            "iloveyou",
            "qwertyuiop",
        ] {
            assert_eq!(check(common), Err(PasswordError::Common), "{common:?}");
        }
        // The username, with or without its domain, in any case.
        for named in [
            "anna@noord.test!",
            "ANNA2024zomerfeest",
            "mijn-anna-wachtwoord",
        ] {
            assert_eq!(
                check(named),
                Err(PasswordError::ContainsUsername),
                "{named:?}"
            );
        }
        // A short name inside a passphrase is not the name.
        assert_eq!(
            check_new("correct horse battery", "cor@noord.test", &[]),
            Ok(())
        );
        // Sequences, repeats, keyboard walks and local words with few changes.
        for guessable in [
            "aaaaaaaaaaaa",
            "abcdefgh12",
            "Wachtwoord1",
            "welkom2024",
            "Zorggroep1",
        ] {
            assert!(
                matches!(
                    check(guessable),
                    Err(PasswordError::Guessable | PasswordError::Common)
                ),
                "{guessable:?}: {:?}",
                check(guessable)
            );
        }
    }

    #[test]
    fn length_limits_and_unknown_accounts() {
        assert_eq!(hash("short"), Err(PasswordError::TooShort));
        assert_eq!(
            hash(&"x".repeat(MAX_LENGTH + 1)),
            Err(PasswordError::TooLong)
        );
        assert!(!verify("anything at all", None));
        assert!(!verify("anything at all", Some("not a hash")));
        assert!(
            PasswordHash::new(STAND_IN).is_ok(),
            "the stand-in hash parses, so it costs the same"
        );
    }
}
