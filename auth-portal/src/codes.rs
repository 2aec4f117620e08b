//! One-time codes sent by e-mail or SMS: 6 digits from a CSPRNG, valid for 10 minutes, used
//! once, and dead after 5 wrong tries. Kept in the shared store, so any instance can check a code
//! another one sent.

use std::time::Duration;

use certgate_store::{RateLimit, Store, StoreError};
use subtle::ConstantTimeEq;

/// How long a sent code is valid.
pub const CODE_LIFETIME: Duration = Duration::from_secs(600);

/// What checking an entered code found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CodeCheck {
    Accepted,
    /// Wrong; this many tries are left for this code.
    Wrong {
        tries_left: u32,
    },
    /// No live code: it expired, was used, or died of wrong tries. Send a new one.
    NoCode,
}

/// A six-digit code as a person types it: authenticator apps show `123 456`, some people type
/// `123-456`, and phones paste with spaces around. Spaces (any Unicode white space) and dashes
/// are dropped; anything else but digits leaves the text as it is, which then matches nothing.
pub fn typed_digits(entered: &str) -> std::borrow::Cow<'_, str> {
    let separator = |c: char| c.is_whitespace() || matches!(c, '-' | '\u{2010}'..='\u{2015}');
    if entered.contains(separator) {
        std::borrow::Cow::Owned(entered.chars().filter(|&c| !separator(c)).collect())
    } else {
        std::borrow::Cow::Borrowed(entered)
    }
}

/// A fresh code: uniform over 000000–999999.
pub fn new_code() -> String {
    format!("{:06}", rand::random_range(0..1_000_000u32))
}

/// Remembers `code` for the sign-in `attempt` (a session id), replacing an earlier one.
pub async fn remember(
    store: &Store,
    attempt: &str,
    code: &str,
    now: u64,
) -> Result<(), StoreError> {
    let value = format!("{code}|{}", now + CODE_LIFETIME.as_secs());
    store
        .put_once("code", attempt, value.as_bytes(), CODE_LIFETIME)
        .await
}

/// Checks an entered code. The code is taken atomically, so two racing checks cannot both use
/// it; a wrong guess puts it back until `max_wrong` wrong tries.
pub async fn check(
    store: &Store,
    attempt: &str,
    entered: &str,
    max_wrong: u32,
    now: u64,
) -> Result<CodeCheck, StoreError> {
    let Some(value) = store.take_once("code", attempt).await? else {
        return Ok(CodeCheck::NoCode);
    };
    let text = String::from_utf8_lossy(&value);
    let Some((code, expires)) = text.split_once('|') else {
        return Ok(CodeCheck::NoCode);
    };
    let expires: u64 = expires.parse().unwrap_or(0);
    if now >= expires {
        return Ok(CodeCheck::NoCode);
    }
    if bool::from(code.as_bytes().ct_eq(typed_digits(entered).as_bytes())) {
        return Ok(CodeCheck::Accepted);
    }
    let limit = RateLimit {
        limit: max_wrong.saturating_sub(1),
        window: CODE_LIFETIME,
    };
    // Counted per code (its expiry tells codes of one attempt apart), so a new code starts over.
    let wrong = store
        .hit("code-wrong", &format!("{attempt}:{expires}"), limit)
        .await?;
    if !wrong.allowed {
        return Ok(CodeCheck::Wrong { tries_left: 0 });
    }
    // Not over a code sent meanwhile ("send a new code"), which must stay the one that works.
    store
        .put_once_back("code", attempt, &value, Duration::from_secs(expires - now))
        .await?;
    Ok(CodeCheck::Wrong {
        tries_left: max_wrong.saturating_sub(wrong.count),
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use std::sync::Arc;

    use certgate_store::{MemoryStore, SystemClock};

    use super::*;

    fn store() -> Store {
        Store::Memory(Arc::new(MemoryStore::new(Arc::new(SystemClock))))
    }

    #[test]
    fn codes_are_six_digits() {
        for _ in 0..200 {
            let code = new_code();
            assert_eq!(code.len(), 6);
            assert!(code.bytes().all(|b| b.is_ascii_digit()));
        }
    }

    #[test]
    fn spaces_and_dashes_inside_a_typed_code_are_dropped() {
        for typed in [
            "547171",
            "547 171",
            " 547 171 ",
            "547-171",
            "547\u{a0}171",
            "54 71 71",
        ] {
            assert_eq!(typed_digits(typed), "547171", "{typed:?}");
        }
        // Anything else stays, and so matches no code.
        assert_eq!(typed_digits("547x171"), "547x171");
        assert_eq!(typed_digits(""), "");
    }

    #[tokio::test]
    async fn a_code_typed_as_the_app_shows_it_is_accepted() {
        let store = store();
        remember(&store, "attempt", "547171", 1_000).await.unwrap();
        assert_eq!(
            check(&store, "attempt", "547 171", 5, 1_001).await.unwrap(),
            CodeCheck::Accepted
        );
    }

    #[tokio::test]
    async fn a_code_is_used_once() {
        let s = store();
        remember(&s, "attempt-1", "482913", 1_000).await.unwrap();
        assert_eq!(
            check(&s, "attempt-1", " 482913 ", 5, 1_010).await.unwrap(),
            CodeCheck::Accepted
        );
        assert_eq!(
            check(&s, "attempt-1", "482913", 5, 1_011).await.unwrap(),
            CodeCheck::NoCode
        );
    }

    #[tokio::test]
    async fn five_wrong_tries_kill_the_code() {
        let s = store();
        remember(&s, "attempt-2", "482913", 1_000).await.unwrap();
        for left in (1..5).rev() {
            assert_eq!(
                check(&s, "attempt-2", "000000", 5, 1_010).await.unwrap(),
                CodeCheck::Wrong { tries_left: left }
            );
        }
        assert_eq!(
            check(&s, "attempt-2", "000000", 5, 1_010).await.unwrap(),
            CodeCheck::Wrong { tries_left: 0 }
        );
        assert_eq!(
            check(&s, "attempt-2", "482913", 5, 1_010).await.unwrap(),
            CodeCheck::NoCode,
            "even the right code is dead now"
        );

        // "Send a new code" starts over.
        remember(&s, "attempt-2", "130572", 1_020).await.unwrap();
        assert_eq!(
            check(&s, "attempt-2", "000000", 5, 1_030).await.unwrap(),
            CodeCheck::Wrong { tries_left: 4 }
        );
        assert_eq!(
            check(&s, "attempt-2", "130572", 5, 1_031).await.unwrap(),
            CodeCheck::Accepted
        );
    }

    #[tokio::test]
    async fn codes_expire_after_ten_minutes() {
        let s = store();
        remember(&s, "attempt-3", "482913", 1_000).await.unwrap();
        assert_eq!(
            check(&s, "attempt-3", "482913", 5, 1_600).await.unwrap(),
            CodeCheck::NoCode
        );
    }
}
