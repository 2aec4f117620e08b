//! Recovery codes: ten random codes shown once at enrolment, stored only as hashes, each usable
//! once. They are 50 random bits each, so a fast salted hash is enough (no password stretching
//! needed for secrets nobody chose).

use ring::digest::{digest, SHA256};
use subtle::ConstantTimeEq;

/// How many codes an enrolment gives.
pub const CODES: usize = 10;
const ALPHABET: &[u8; 31] = b"abcdefghjkmnpqrstuvwxyz23456789";

/// New codes, formatted `xxxxx-xxxxx` for reading aloud and typing; no look-alike characters.
pub fn new_codes() -> Vec<String> {
    (0..CODES)
        .map(|_| {
            let chars: String = (0..10)
                .map(|_| char::from(ALPHABET[rand::random_range(0..ALPHABET.len())]))
                .collect();
            format!("{}-{}", &chars[..5], &chars[5..])
        })
        .collect()
}

fn normalise(code: &str) -> String {
    code.chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .map(|c| c.to_ascii_lowercase())
        .collect()
}

/// The stored form of a code for `account_id` (salted with it).
pub fn hash(account_id: &str, code: &str) -> String {
    let input = format!("certgate-recovery:{account_id}:{}", normalise(code));
    hex_encode(digest(&SHA256, input.as_bytes()).as_ref())
}

fn hex_encode(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The index of the stored hash `code` matches, if any (then remove it: a code works once).
pub fn find(account_id: &str, stored: &[String], code: &str) -> Option<usize> {
    let candidate = hash(account_id, code);
    let mut found = None;
    // Every stored hash is compared, whatever matched, in constant time.
    for (i, h) in stored.iter().enumerate() {
        if bool::from(h.as_bytes().ct_eq(candidate.as_bytes())) {
            found = Some(i);
        }
    }
    found
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn codes_work_once_and_only_for_their_account() {
        let codes = new_codes();
        assert_eq!(codes.len(), CODES);
        assert!(codes
            .iter()
            .all(|c| c.len() == 11 && c.as_bytes()[5] == b'-'));
        let mut stored: Vec<String> = codes.iter().map(|c| hash("acc-1", c)).collect();
        assert!(
            !stored.iter().any(|h| h.contains(&normalise(&codes[3]))),
            "only hashes are stored"
        );

        let typed = codes[3].to_uppercase().replace('-', " ");
        let i = find("acc-1", &stored, &typed).unwrap();
        assert_eq!(i, 3);
        stored.remove(i);
        assert_eq!(find("acc-1", &stored, &codes[3]), None, "used once");
        assert_eq!(stored.len(), CODES - 1);
        assert_eq!(
            find("acc-2", &stored, &codes[4]),
            None,
            "salted with the account"
        );
        assert_eq!(find("acc-1", &stored, "not-a-code"), None);
    }
}
