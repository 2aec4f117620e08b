//! What the admin pages show in the page's language that is stored or made in English: audit
//! entries as sentences ("Anna reset the second factor of groep-zonnebloem"), their details,
//! and the allow-list problems the policies crate names. The stored text stays as it is (the
//! export and the API keep it); only what a page shows is translated.

use std::collections::HashMap;

use certgate_db::AuditEntry;

use crate::i18n::Texts;

/// `{who}`, `{whom}` and `{action}` filled into `template` in one pass, so a name that happens
/// to contain a placeholder stays as typed.
fn fill_names(template: &str, who: &str, whom: &str, action: &str) -> String {
    let mut out = String::with_capacity(template.len() + who.len() + whom.len());
    let mut rest = template;
    while let Some(start) = rest.find('{') {
        out.push_str(&rest[..start]);
        let after = &rest[start..];
        let (value, skip) = if after.starts_with("{who}") {
            (who, "{who}".len())
        } else if after.starts_with("{whom}") {
            (whom, "{whom}".len())
        } else if after.starts_with("{action}") {
            (action, "{action}".len())
        } else {
            ("{", 1)
        };
        out.push_str(value);
        rest = &after[skip..];
    }
    out.push_str(rest);
    out.trim().to_owned()
}

/// `word` in the page's words, when it is one the texts know; else as it is.
fn word<'a>(t: &'a Texts, word: &'a str) -> &'a str {
    t.audit_words
        .iter()
        .find(|(en, _)| *en == word)
        .map_or(word, |(_, translated)| translated)
}

/// The actor's name as a person reads it: the account's display name when the actor is an
/// account of the organisation (`names`: user name → name), else the stored actor in words.
pub(crate) fn actor_name(t: &Texts, actor: &str, names: &HashMap<String, String>) -> String {
    match names.get(&actor.to_lowercase()) {
        Some(name) if !name.trim().is_empty() => name.clone(),
        _ => word(t, actor).to_owned(),
    }
}

/// An audit entry as a sentence in the page's language; an action the texts do not know is
/// shown as stored.
pub(crate) fn audit_sentence(
    t: &Texts,
    entry: &AuditEntry,
    names: &HashMap<String, String>,
) -> String {
    let template = t
        .audit_sentences
        .iter()
        .find(|(action, _)| *action == entry.action)
        .map_or(t.audit_other, |(_, sentence)| sentence);
    let who = actor_name(t, &entry.actor, names);
    fill_names(template, &who, &entry.subject, &entry.action)
}

/// An audit entry's detail in the page's words: `method=email trust=session` reads
/// "method: e-mail, trust: session"; known words and the first words of each `; ` part are
/// translated, names, addresses and values typed by people are left alone.
pub(crate) fn audit_detail(t: &Texts, detail: &str) -> String {
    detail
        .split("; ")
        .map(|part| {
            let whole = word(t, part);
            if whole != part {
                return whole.to_owned();
            }
            let tokens: Vec<&str> = part.split(' ').collect();
            if tokens.iter().all(|token| token.contains('=')) {
                return tokens
                    .iter()
                    .filter_map(|token| token.split_once('='))
                    .map(|(key, value)| format!("{}: {}", word(t, key), word(t, value)))
                    .collect::<Vec<_>>()
                    .join(", ");
            }
            // The longest known words the part starts with: "note changed 10.0.0.0/8".
            let known = t
                .audit_words
                .iter()
                .filter(|(en, _)| {
                    part.strip_prefix(en)
                        .is_some_and(|rest| rest.starts_with(' '))
                })
                .max_by_key(|(en, _)| en.len());
            match known {
                Some((en, translated)) => format!("{translated}{}", &part[en.len()..]),
                None => part.to_owned(),
            }
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// An allow-list problem (`line N: "text": why`, or a message about the whole list) in the
/// page's language: the line number's word and the reason translated, what the admin typed
/// left as typed.
pub(crate) fn allow_problem(t: &Texts, problem: &str) -> String {
    let translate = |why: &str| {
        t.allow_problem_words
            .iter()
            .fold(why.to_owned(), |text, (en, translated)| {
                text.replace(en, translated)
            })
    };
    // The typed text is quoted with its quotes escaped, so the last `": ` ends it.
    let quoted = problem
        .strip_prefix("line ")
        .and_then(|rest| rest.split_once(": \""))
        .and_then(|(line, rest)| {
            let end = rest.rfind("\": ")?;
            Some((line, &rest[..end], &rest[end + 3..]))
        });
    match quoted {
        Some((line, typed, why)) => {
            let line_word = word_of_line(t);
            format!("{line_word}{line}: \"{typed}\": {}", translate(why))
        }
        None => translate(problem),
    }
}

/// "line " in the page's language.
fn word_of_line(t: &Texts) -> &'static str {
    t.allow_problem_words
        .iter()
        .find(|(en, _)| *en == "line ")
        .map_or("line ", |(_, translated)| translated)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::i18n::{EN, NL};

    fn entry(actor: &str, action: &str, subject: &str, detail: &str) -> AuditEntry {
        AuditEntry {
            org: "noord".into(),
            at: 0,
            actor: actor.into(),
            action: action.into(),
            subject: subject.into(),
            ip: String::new(),
            detail: detail.into(),
        }
    }

    #[test]
    fn audit_entries_read_as_sentences_in_the_pages_language() {
        let names = HashMap::from([("anna@noord.test".to_owned(), "Anna".to_owned())]);
        let reset = entry(
            "anna@noord.test",
            "admin.user.reset_mfa",
            "groep-zonnebloem",
            "",
        );
        assert_eq!(
            audit_sentence(&NL, &reset, &names),
            "Anna heeft de tweede factor van groep-zonnebloem opnieuw ingesteld"
        );
        assert_eq!(
            audit_sentence(&EN, &reset, &names),
            "Anna reset the second factor of groep-zonnebloem"
        );
        // Someone no longer known keeps their user name; a name nobody has is in words.
        let gone = entry("weg@noord.test", "sign-in", "weg@noord.test", "");
        assert_eq!(
            audit_sentence(&NL, &gone, &names),
            "weg@noord.test heeft ingelogd"
        );
        let unknown = entry("(unknown name)", "sign-in-failed", "(unknown name)", "");
        assert!(audit_sentence(&NL, &unknown, &names).starts_with("(onbekende naam) "));
        // A name with a placeholder in it stays as typed.
        let odd = HashMap::from([("x".to_owned(), "{whom}".to_owned())]);
        let edit = entry("x", "admin.user.edit", "lisa", "");
        assert_eq!(
            audit_sentence(&EN, &edit, &odd),
            "{whom} changed the account lisa"
        );
        // An action without a sentence is shown as stored.
        let new = entry("anna@noord.test", "something-new", "lisa", "");
        assert_eq!(
            audit_sentence(&EN, &new, &names),
            "Anna: something-new lisa"
        );
    }

    #[test]
    fn every_audit_action_has_a_sentence_in_both_languages() {
        for texts in [&EN, &NL] {
            for action in certgate_db::AuditAction::ALL {
                assert!(
                    texts
                        .audit_sentences
                        .iter()
                        .any(|(a, _)| *a == action.as_str()),
                    "{} has no sentence for {action:?}",
                    texts.lang
                );
            }
        }
    }

    #[test]
    fn details_read_as_words() {
        assert_eq!(
            audit_detail(&NL, "method=email trust=session"),
            "methode: e-mail, vertrouwen: sessie"
        );
        assert_eq!(
            audit_detail(&EN, "method=email trust=session"),
            "method: e-mail, trust: session"
        );
        assert_eq!(
            audit_detail(&NL, "password; no account has the name typed"),
            "wachtwoord; geen account heeft de getypte naam"
        );
        assert_eq!(
            audit_detail(&NL, "name \"Lisa\" -> \"Lisa de Vries\"; roles  -> admin"),
            "naam \"Lisa\" -> \"Lisa de Vries\"; rollen  -> admin"
        );
        assert_eq!(
            audit_detail(&NL, "added 10.0.0.0/24; note changed 10.1.0.0/24"),
            "toegevoegd 10.0.0.0/24; notitie gewijzigd 10.1.0.0/24"
        );
        assert_eq!(audit_detail(&NL, ""), "");
        assert_eq!(
            audit_detail(&NL, "sso entra: refused"),
            "sso entra: refused"
        );
    }

    #[test]
    fn allow_list_problems_from_the_policies_read_in_dutch() {
        let limits = certgate_policies::AdminAllowListLimits::default();
        let text = "192.0.2.1\n10.0.0.300\n0.0.0.0/0\n::/0\n192.0.2.1\n\
                    192.0.2.9 # \u{7}\n\"x\": y\n";
        let problems = certgate_policies::parse_admin_allow_list(text, &limits).unwrap_err();
        let dutch: Vec<String> = problems.iter().map(|p| allow_problem(&NL, p)).collect();
        assert_eq!(
            dutch,
            [
                "regel 2: \"10.0.0.300\": geen IP-adres of netwerk (CIDR)",
                "regel 3: \"0.0.0.0/0\": te breed: IPv4-netwerken moeten een prefix hebben van \
                 /16 of langer (vraag de netwerkbeheerders om bredere netwerken in de \
                 beleidsbestanden te zetten)",
                "regel 4: \"::/0\": te breed: IPv6-netwerken moeten een prefix hebben van /48 \
                 of langer (vraag de netwerkbeheerders om bredere netwerken in de \
                 beleidsbestanden te zetten)",
                "regel 5: \"192.0.2.1\": 192.0.2.1/32 staat al op regel 1",
                "regel 6: \"192.0.2.9\": de notitie na # bevat stuurtekens",
                "regel 7: \"\\\"x\\\": y\": geen IP-adres of netwerk (CIDR)",
            ]
        );
        // English pages show them as the policies wrote them.
        for problem in &problems {
            assert_eq!(&allow_problem(&EN, problem), problem);
        }
        let long = format!("192.0.2.1 # {}", "x".repeat(300));
        let problems = certgate_policies::parse_admin_allow_list(&long, &limits).unwrap_err();
        assert_eq!(
            allow_problem(&NL, &problems[0]),
            "regel 1: \"192.0.2.1\": de notitie na # is langer dan 200 tekens"
        );
        let many = "x\n".repeat(102);
        let problems = certgate_policies::parse_admin_allow_list(&many, &limits).unwrap_err();
        assert_eq!(
            problems.last().map(|p| allow_problem(&NL, p)).as_deref(),
            Some("en nog 2 regels met problemen")
        );
        let tight = certgate_policies::AdminAllowListLimits {
            max_entries: 1,
            ..limits
        };
        let problems = certgate_policies::parse_admin_allow_list("192.0.2.1\n192.0.2.2\n", &tight)
            .unwrap_err();
        assert_eq!(
            allow_problem(&NL, &problems[0]),
            "2 regels zijn meer dan de 1 die zijn toegestaan; gebruik bredere netwerken of \
             vraag de netwerkbeheerders ze in de beleidsbestanden te zetten"
        );
    }
}
