//! Every transition of the sign-in on a fixed clock: the flows users know, then every pair of
//! step and event, with each pair the machine refuses named.
#![allow(clippy::unwrap_used)]

use certgate_policies::{Access, Language, MfaPolicy};

use super::*;

const NOW: i64 = 1_800_000_000;
const SENDERS: Senders = Senders {
    sms: true,
    email: true,
};

fn org(methods: &[MfaMethod], required: MfaRequirement) -> Organisation {
    Organisation {
        id: "noord".into(),
        name: "Zorggroep Noord".into(),
        hosts: vec!["noord.test".into()],
        upstreams: Vec::new(),
        logo: None,
        colour: None,
        default_language: Language::Nl,
        time_zone: Default::default(),
        access: Access::default(),
        mfa: MfaPolicy {
            methods: methods.to_vec(),
            required,
            exempt_roles: vec!["it".into()],
            ..MfaPolicy::default()
        },
        sso: Vec::new(),
        health_check: None,
        source: "noord.toml".into(),
    }
}

fn all_methods() -> Organisation {
    org(&MfaMethod::ALL, MfaRequirement::All)
}

/// Hanna: a personal account with a mobile number and an address, nothing enrolled, last reset
/// an hour ago.
fn hanna() -> Account {
    Account {
        id: "a1".into(),
        org: "noord".into(),
        username: "hanna".into(),
        display_name: "Hanna".into(),
        email: Some("hanna@noord.test".into()),
        mobile: Some("+31612345678".into()),
        kind: AccountKind::Personal,
        roles: Vec::new(),
        password_hash: None,
        mfa_method: None,
        totp_secret: None,
        recovery_codes: Vec::new(),
        mfa_enrolled: false,
        last_login: None,
        disabled: false,
        not_valid_before: NOW - 3600,
        created_at: NOW - 86_400,
    }
}

fn enrolled(factor: MfaChoice) -> Account {
    Account {
        mfa_method: Some(factor),
        mfa_enrolled: true,
        totp_secret: (factor == MfaChoice::Authenticator).then(|| "sealed-old".into()),
        recovery_codes: vec!["hash".into()],
        ..hanna()
    }
}

fn ctx<'a>(org: &'a Organisation, account: &'a Account) -> Ctx<'a> {
    Ctx {
        org,
        account,
        senders: SENDERS,
        passkeys: 0,
        now: NOW,
    }
}

/// Proven by a password a minute ago.
fn proven() -> Proven {
    Proven {
        replacing: false,
        org: "noord".into(),
        account: "a1".into(),
        at: NOW - 60,
        reproved: false,
    }
}

fn signed_in(mfa: MfaStatus) -> SignedIn {
    SignedIn {
        recovered: false,
        org: "noord".into(),
        account: "a1".into(),
        at: NOW,
        mfa,
    }
}

fn issued(method: Method, mfa: MfaStatus, trust: bool) -> Effect {
    Effect::Issue(Proof { method, mfa, trust })
}

fn counted(method: Method, success: bool) -> Effect {
    Effect::CountLogin { method, success }
}

const SMS: MfaChoice = MfaChoice::Sms;
const EMAIL: MfaChoice = MfaChoice::Email;
const APP: MfaChoice = MfaChoice::Authenticator;
const PASSKEY: MfaChoice = MfaChoice::Passkey;

// ---------------------------------------------------------------------------------------------
// After the password

#[test]
fn an_exempt_role_is_signed_in_by_its_password_alone() {
    let org = all_methods();
    let it = Account {
        roles: vec!["it".into()],
        ..hanna()
    };
    let next = transition(&Step::Started, Event::PasswordOk, &ctx(&org, &it));
    assert_eq!(next.step, Step::SignedIn(signed_in(MfaStatus::Exempt)));
    assert_eq!(
        next.effects,
        vec![
            counted(Method::Password, true),
            issued(Method::Password, MfaStatus::Exempt, false)
        ]
    );
    assert_eq!(next.view, Some(View::Done(Finish::Return)));
}

#[test]
fn where_only_the_enrolled_need_a_second_factor_the_others_sign_in_with_mfa_none() {
    let org = org(&MfaMethod::ALL, MfaRequirement::Enrolled);
    let next = transition(&Step::Started, Event::PasswordOk, &ctx(&org, &hanna()));
    assert_eq!(next.step, Step::SignedIn(signed_in(MfaStatus::None)));
    assert!(next
        .effects
        .contains(&issued(Method::Password, MfaStatus::None, false)));

    // Once enrolled, the factor is asked for.
    let enrolled = enrolled(APP);
    let next = transition(&Step::Started, Event::PasswordOk, &ctx(&org, &enrolled));
    assert!(matches!(next.step, Step::AwaitingApp { .. }), "{next:?}");
}

#[test]
fn the_second_factor_starts_on_a_new_session_id_and_sends_a_stored_channels_code_at_once() {
    let org = all_methods();
    let account = enrolled(SMS);
    let next = transition(&Step::Started, Event::PasswordOk, &ctx(&org, &account));
    assert_eq!(
        next.step,
        Step::AwaitingCode {
            proven: Proven {
                at: NOW,
                ..proven()
            },
            channel: SMS,
            chosen: false,
            sent: Sent::No,
            instead: false,
        }
    );
    assert_eq!(
        next.effects,
        vec![
            counted(Method::Password, true),
            Effect::RotateSession,
            Effect::SendCode {
                channel: SMS,
                again: false
            }
        ]
    );
    assert_eq!(next.view, Some(View::ToMfa));
}

#[test]
fn without_a_factor_the_person_chooses_and_a_group_enrols_the_authenticator() {
    let org = all_methods();
    let next = transition(&Step::Started, Event::PasswordOk, &ctx(&org, &hanna()));
    assert!(matches!(next.step, Step::Choosing { .. }), "{next:?}");

    // A group tablet's account uses one authenticator, whatever the organisation offers.
    let group = Account {
        kind: AccountKind::Group,
        roles: vec!["it".into()],
        ..hanna()
    };
    let next = transition(&Step::Started, Event::PasswordOk, &ctx(&org, &group));
    assert!(
        matches!(
            next.step,
            Step::Enrolling {
                chosen: false,
                secret: None,
                ..
            }
        ),
        "a group account is never exempt: {next:?}"
    );
    // An organisation offering only the authenticator has nothing to choose either.
    let org = org_only(&[MfaMethod::Authenticator]);
    let next = transition(&Step::Started, Event::PasswordOk, &ctx(&org, &hanna()));
    assert!(
        matches!(next.step, Step::Enrolling { chosen: false, .. }),
        "{next:?}"
    );
}

fn org_only(methods: &[MfaMethod]) -> Organisation {
    org(methods, MfaRequirement::All)
}

// ---------------------------------------------------------------------------------------------
// Single sign-on

#[test]
fn a_provider_trusted_for_mfa_signs_in_with_mfa_yes_only_when_its_amr_says_so() {
    let org = all_methods();
    let account = hanna();
    let c = ctx(&org, &account);
    let with_amr = transition(
        &Step::Started,
        Event::ProviderVouched(ProviderMfa::Provider { vouched: true }),
        &c,
    );
    assert_eq!(with_amr.step, Step::SignedIn(signed_in(MfaStatus::Yes)));
    assert_eq!(
        with_amr.effects,
        vec![
            counted(Method::Sso, true),
            issued(Method::Sso, MfaStatus::Yes, false)
        ]
    );
    let without = transition(
        &Step::Started,
        Event::ProviderVouched(ProviderMfa::Provider { vouched: false }),
        &c,
    );
    assert_eq!(without.step, Step::SignedIn(signed_in(MfaStatus::None)));
}

#[test]
fn a_provider_without_mfa_is_followed_by_certgates_own_second_factor() {
    let org = all_methods();
    let account = enrolled(APP);
    let next = transition(
        &Step::Started,
        Event::ProviderVouched(ProviderMfa::Certgate),
        &ctx(&org, &account),
    );
    assert!(matches!(next.step, Step::AwaitingApp { .. }), "{next:?}");
    assert_eq!(
        next.effects,
        vec![counted(Method::Sso, true), Effect::RotateSession]
    );
    // An exempt role is exempt after a provider too.
    let it = Account {
        roles: vec!["it".into()],
        ..hanna()
    };
    let next = transition(
        &Step::Started,
        Event::ProviderVouched(ProviderMfa::Certgate),
        &ctx(&org, &it),
    );
    assert_eq!(next.step, Step::SignedIn(signed_in(MfaStatus::Exempt)));
}

// ---------------------------------------------------------------------------------------------
// Choosing and enrolling

#[test]
fn a_first_choice_of_channel_sends_its_code_and_its_first_right_code_stores_it() {
    let org = all_methods();
    let account = hanna();
    let c = ctx(&org, &account);
    let choosing = Step::Choosing { proven: proven() };
    let chose = transition(&choosing, Event::Chose("sms"), &c);
    let waiting = Step::AwaitingCode {
        proven: proven(),
        channel: SMS,
        chosen: true,
        sent: Sent::No,
        instead: false,
    };
    assert_eq!(chose.step, waiting);
    assert_eq!(
        chose.effects,
        vec![Effect::SendCode {
            channel: SMS,
            again: false
        }]
    );
    assert_eq!(chose.view, Some(View::ToMfa));

    let sent = transition(&chose.step, Event::CodeSent { again: false }, &c);
    assert_eq!(sent.step, waiting.clone().with_sent(Sent::Yes));
    assert_eq!(sent.view, None, "the choice's redirect stands");
    assert_eq!(sent.step.awaiting(), Some(Awaiting::Code(SMS)));

    let right = transition(&sent.step, Event::CodeRight { trust: true }, &c);
    assert_eq!(right.step, Step::SignedIn(signed_in(MfaStatus::Yes)));
    assert_eq!(
        right.effects,
        vec![
            Effect::StoreFactor {
                factor: SMS,
                secret: None,
                recovery_codes: true,
                replacing: false,
            },
            Effect::Audit(Audit::FactorEnrolled(SMS)),
            Effect::NotifyFactorAdded(SMS),
            counted(Method::Factor(SMS), true),
            issued(Method::Factor(SMS), MfaStatus::Yes, true),
        ]
    );
    // A first factor: its recovery codes, and "set-up complete".
    assert_eq!(right.view, Some(View::Done(Finish::RecoveryCodes)));
}

#[test]
fn a_choice_made_on_this_visit_can_be_changed_but_a_stored_factor_cannot() {
    let org = all_methods();
    let account = hanna();
    let c = ctx(&org, &account);
    // The browser's back button to the choice page, and another method picked.
    let waiting = Step::AwaitingCode {
        proven: proven(),
        channel: SMS,
        chosen: true,
        sent: Sent::Yes,
        instead: false,
    };
    let next = transition(&waiting, Event::Chose("authenticator"), &c);
    assert!(
        matches!(next.step, Step::Enrolling { chosen: true, .. }),
        "{next:?}"
    );
    let stored = enrolled(SMS);
    let step = Step::AwaitingCode {
        proven: proven(),
        channel: SMS,
        chosen: false,
        sent: Sent::Yes,
        instead: false,
    };
    let next = transition(&step, Event::Chose("email"), &ctx(&org, &stored));
    assert_eq!(next.step, step);
    assert!(next.effects.is_empty());
}

#[test]
fn a_stored_channels_right_code_stores_nothing_again() {
    let org = all_methods();
    let account = enrolled(EMAIL);
    let step = Step::AwaitingCode {
        proven: proven(),
        channel: EMAIL,
        chosen: false,
        sent: Sent::Yes,
        instead: false,
    };
    let next = transition(
        &step,
        Event::CodeRight { trust: false },
        &ctx(&org, &account),
    );
    assert_eq!(
        next.effects,
        vec![
            counted(Method::Factor(EMAIL), true),
            issued(Method::Factor(EMAIL), MfaStatus::Yes, false),
        ]
    );
}

#[test]
fn only_channels_with_a_sender_and_a_number_or_address_can_be_chosen() {
    let org = all_methods();
    let no_mobile = Account {
        mobile: None,
        ..hanna()
    };
    let choosing = Step::Choosing { proven: proven() };
    for (name, account, senders) in [
        ("sms", &no_mobile, SENDERS),
        (
            "email",
            &hanna(),
            Senders {
                sms: true,
                email: false,
            },
        ),
        ("carrier-pigeon", &hanna(), SENDERS),
        ("", &hanna(), SENDERS),
    ] {
        let c = Ctx {
            senders,
            ..ctx(&org, account)
        };
        let next = transition(&choosing, Event::Chose(name), &c);
        assert_eq!(next.step, choosing, "{name}");
        assert!(next.effects.is_empty(), "{name}");
        assert_eq!(
            next.view,
            Some(View::Page {
                message: Some(Message::ChooseOne),
                trust: false
            }),
            "{name}"
        );
    }
    // A method the organisation does not offer cannot be posted either.
    let org = org_only(&[MfaMethod::Authenticator, MfaMethod::Email]);
    let next = transition(&choosing, Event::Chose("sms"), &ctx(&org, &hanna()));
    assert_eq!(next.step, choosing);
}

#[test]
fn enrolling_seals_a_secret_on_the_first_page_load_and_a_first_code_stores_it_with_recovery_codes()
{
    let org = all_methods();
    let account = hanna();
    let c = ctx(&org, &account);
    let chose = transition(
        &Step::Choosing { proven: proven() },
        Event::Chose("authenticator"),
        &c,
    );
    assert!(chose.effects.is_empty(), "nothing is sent for an app");
    let shown = transition(&chose.step, Event::Show, &c);
    assert_eq!(shown.effects, vec![Effect::SealNewSecret]);
    let sealed = transition(&shown.step, Event::SecretSealed("sealed-new".into()), &c);
    assert_eq!(sealed.view, None);
    assert_eq!(
        sealed.step.awaiting(),
        Some(Awaiting::Enrolment {
            secret: "sealed-new"
        })
    );
    // Loading the page again keeps the secret the QR code showed.
    let again = transition(&sealed.step, Event::Show, &c);
    assert_eq!(again.step, sealed.step);
    assert!(again.effects.is_empty());

    let right = transition(&sealed.step, Event::CodeRight { trust: false }, &c);
    assert_eq!(
        right.effects,
        vec![
            Effect::StoreFactor {
                factor: APP,
                secret: Some("sealed-new".into()),
                recovery_codes: true,
                replacing: false,
            },
            Effect::Audit(Audit::FactorEnrolled(APP)),
            Effect::NotifyFactorAdded(APP),
            counted(Method::Factor(APP), true),
            issued(Method::Factor(APP), MfaStatus::Yes, false),
        ]
    );
    assert_eq!(right.view, Some(View::Done(Finish::RecoveryCodes)));
}

/// Issue 22, point 12: whatever the first second factor (an e-mail or SMS code, an
/// authenticator, a passkey), its set-up ends on ten new recovery codes and "set-up complete"
/// (at sign-in, or turned on from the account page); an account that has codes already keeps
/// them, except that an authenticator always comes with new ones.
#[test]
fn a_first_factor_of_any_kind_ends_on_new_recovery_codes() {
    let every = offers_passkeys();
    let with_codes = Account {
        recovery_codes: vec!["hash".into()],
        ..hanna()
    };
    // From the choice to the first right answer of `chose`.
    let set_up = |account: &Account, chose: &str| {
        let c = ctx(&every, account);
        let mut step = transition(
            &Step::Choosing { proven: proven() },
            Event::Chose(chose),
            &c,
        )
        .step;
        if step.channel().is_some() {
            step = transition(&step, Event::CodeSent { again: false }, &c).step;
        }
        if matches!(step, Step::Enrolling { .. }) {
            step = transition(&step, Event::SecretSealed("sealed-new".into()), &c).step;
        }
        let event = if matches!(step, Step::EnrollingPasskey { .. }) {
            Event::PasskeyMade {
                passkey: "pk",
                trust: false,
            }
        } else {
            Event::CodeRight { trust: false }
        };
        transition(&step, event, &c)
    };
    let stored_codes = |next: &Next| {
        next.effects.iter().find_map(|e| match e {
            Effect::StoreFactor { recovery_codes, .. }
            | Effect::StorePasskey { recovery_codes, .. } => Some(*recovery_codes),
            _ => None,
        })
    };
    for (method, account, codes) in [
        ("email", &hanna(), true),
        ("sms", &hanna(), true),
        ("authenticator", &hanna(), true),
        ("passkey", &hanna(), true),
        ("email", &with_codes, false),
        ("sms", &with_codes, false),
        ("authenticator", &with_codes, true),
        ("passkey", &with_codes, false),
    ] {
        let why = format!("{method}, codes before: {}", account.recovery_codes.len());
        let next = set_up(account, method);
        assert_eq!(
            next.step,
            Step::SignedIn(signed_in(MfaStatus::Yes)),
            "{why}"
        );
        assert_eq!(stored_codes(&next), Some(codes), "{why}: {next:?}");
        let finish = if codes {
            Finish::RecoveryCodes
        } else {
            Finish::Return
        };
        assert_eq!(next.view, Some(View::Done(finish)), "{why}");
    }

    // Turned on from the account page (required only of the enrolled): the same.
    let enrolled_only = org(&MfaMethod::ALL, MfaRequirement::Enrolled);
    let account = hanna();
    let c = ctx(&enrolled_only, &account);
    let done = Step::SignedIn(signed_in(MfaStatus::None));
    let added = transition(&done, Event::AddFactor, &c);
    let chose = transition(&added.step, Event::Chose("email"), &c);
    let sent = transition(&chose.step, Event::CodeSent { again: false }, &c);
    let right = transition(&sent.step, Event::CodeRight { trust: false }, &c);
    assert_eq!(stored_codes(&right), Some(true), "{right:?}");
    assert_eq!(right.view, Some(View::Done(Finish::RecoveryCodes)));
}

/// Every sign-in that succeeds is counted once, by the machine (a password's failure never
/// reaches it: the handler counts that one); a wrong guess once, as a failure.
#[test]
fn every_outcome_is_counted_once() {
    let counts = |next: &Next| -> Vec<Effect> {
        next.effects
            .iter()
            .filter(|e| matches!(e, Effect::CountLogin { .. }))
            .cloned()
            .collect()
    };
    let org = all_methods();
    let exempt = Account {
        roles: vec!["it".into()],
        ..hanna()
    };
    let sms = enrolled(SMS);
    // The password, to a credential at once or on to the second factor.
    for account in [&exempt, &hanna(), &sms] {
        let next = transition(&Step::Started, Event::PasswordOk, &ctx(&org, account));
        assert_eq!(counts(&next), [counted(Method::Password, true)], "{next:?}");
    }
    // The second factor counts itself, and not the password again.
    let waiting = Step::AwaitingCode {
        proven: proven(),
        channel: SMS,
        chosen: false,
        sent: Sent::Yes,
        instead: false,
    };
    let c = ctx(&org, &sms);
    let right = transition(&waiting, Event::CodeRight { trust: false }, &c);
    assert_eq!(counts(&right), [counted(Method::Factor(SMS), true)]);
    let wrong = transition(
        &waiting,
        Event::CodeWrong {
            trust: false,
            gone: false,
        },
        &c,
    );
    assert_eq!(counts(&wrong), [counted(Method::Factor(SMS), false)]);
}

// ---------------------------------------------------------------------------------------------
// Codes

#[test]
fn a_wrong_code_is_counted_audited_and_refused_and_an_expired_one_says_so() {
    let org = all_methods();
    let account = enrolled(SMS);
    let step = Step::AwaitingCode {
        proven: proven(),
        channel: SMS,
        chosen: false,
        sent: Sent::Yes,
        instead: false,
    };
    let c = ctx(&org, &account);
    let wrong = transition(
        &step,
        Event::CodeWrong {
            trust: true,
            gone: false,
        },
        &c,
    );
    assert_eq!(wrong.step, step);
    assert_eq!(
        wrong.effects,
        vec![
            counted(Method::Factor(SMS), false),
            Effect::Audit(Audit::Failed(Method::Factor(SMS)))
        ]
    );
    assert_eq!(
        wrong.view,
        Some(View::Refused {
            message: Message::WrongCode,
            trust: true
        })
    );
    let gone = transition(
        &step,
        Event::CodeWrong {
            trust: false,
            gone: true,
        },
        &c,
    );
    assert_eq!(
        gone.view,
        Some(View::Refused {
            message: Message::NoCode,
            trust: false
        })
    );
}

#[test]
fn a_code_that_could_not_be_sent_matches_nothing_and_says_why_until_one_goes_out() {
    let org = all_methods();
    let account = enrolled(EMAIL);
    let c = ctx(&org, &account);
    let step = Step::AwaitingCode {
        proven: proven(),
        channel: EMAIL,
        chosen: false,
        sent: Sent::No,
        instead: false,
    };
    let limited = SendProblem::Limited { until: NOW + 600 };
    let failed = transition(
        &step,
        Event::CodeNotSent {
            again: false,
            problem: limited,
        },
        &c,
    );
    assert_eq!(failed.step.awaiting(), None, "no code can match");
    let shown = transition(&failed.step, Event::Show, &c);
    assert_eq!(
        shown.view,
        Some(View::Page {
            message: Some(Message::NotSent(limited)),
            trust: false
        })
    );
    let resend = transition(&failed.step, Event::Resend, &c);
    assert_eq!(
        resend.effects,
        vec![Effect::SendCode {
            channel: EMAIL,
            again: true
        }]
    );
    let sent = transition(&resend.step, Event::CodeSent { again: true }, &c);
    assert_eq!(
        sent.view,
        Some(View::Page {
            message: Some(Message::Resent),
            trust: false
        })
    );
    assert_eq!(sent.step.awaiting(), Some(Awaiting::Code(EMAIL)));

    // A resend that fails leaves the code sent before good.
    let failed_again = transition(
        &sent.step,
        Event::CodeNotSent {
            again: true,
            problem: SendProblem::Failed,
        },
        &c,
    );
    assert_eq!(failed_again.step.awaiting(), Some(Awaiting::Code(EMAIL)));
    assert_eq!(
        failed_again.view,
        Some(View::Page {
            message: Some(Message::NotSent(SendProblem::Failed)),
            trust: false
        })
    );
}

#[test]
fn a_recovery_code_stands_in_for_any_factor() {
    let org = all_methods();
    let account = enrolled(APP);
    let c = ctx(&org, &account);
    let right = transition(
        &Step::AwaitingApp {
            proven: proven(),
            instead: false,
        },
        Event::RecoveryRight { left: 9 },
        &c,
    );
    assert_eq!(
        right.step,
        Step::SignedIn(SignedIn {
            recovered: true,
            ..signed_in(MfaStatus::Yes)
        })
    );
    assert_eq!(
        right.effects,
        vec![
            Effect::Audit(Audit::RecoveryCodeUsed),
            counted(Method::Recovery, true),
            issued(Method::Recovery, MfaStatus::Yes, false),
        ]
    );
    assert_eq!(right.view, Some(View::Done(Finish::RecoveryLeft(9))));
    let wrong = transition(
        &Step::AwaitingApp {
            proven: proven(),
            instead: false,
        },
        Event::RecoveryWrong,
        &c,
    );
    assert_eq!(
        wrong.effects,
        vec![
            counted(Method::Recovery, false),
            Effect::Audit(Audit::Failed(Method::Recovery))
        ]
    );
}

// ---------------------------------------------------------------------------------------------
// Policy and account changes half way

#[test]
fn a_factor_the_organisation_no_longer_offers_is_proven_once_before_another_is_chosen() {
    // Enrolled by SMS; the organisation now offers the authenticator and e-mail.
    let org = org_only(&[MfaMethod::Authenticator, MfaMethod::Email]);
    let account = enrolled(SMS);
    let c = ctx(&org, &account);
    let next = transition(&Step::Started, Event::PasswordOk, &c);
    assert!(
        matches!(
            &next.step,
            Step::Reproving {
                factor: SMS,
                sent: Sent::No,
                ..
            }
        ),
        "{next:?}"
    );
    assert!(next.effects.contains(&Effect::SendCode {
        channel: SMS,
        again: false
    }));
    // Choosing before the old factor is proven changes nothing.
    let choose = transition(&next.step, Event::Chose("email"), &c);
    assert_eq!(choose.step, next.step);
    assert_eq!(choose.view, Some(View::ToMfa));

    let sent = transition(&next.step, Event::CodeSent { again: false }, &c);
    let right = transition(&sent.step, Event::CodeRight { trust: false }, &c);
    assert!(
        matches!(&right.step, Step::Choosing { proven } if proven.reproved),
        "{right:?}"
    );
    assert!(right.effects.is_empty(), "no credential for the old factor");
    let chose = transition(&right.step, Event::Chose("email"), &c);
    assert!(
        matches!(
            &chose.step,
            Step::AwaitingCode {
                channel: EMAIL,
                chosen: true,
                ..
            }
        ),
        "{chose:?}"
    );
}

#[test]
fn an_enrolled_authenticator_no_longer_offered_is_asked_for_as_an_app_code() {
    let org = org_only(&[MfaMethod::Sms]);
    let account = enrolled(APP);
    let next = transition(&Step::Started, Event::PasswordOk, &ctx(&org, &account));
    assert_eq!(next.step.awaiting(), Some(Awaiting::App));
    assert_eq!(next.effects.len(), 2, "nothing sent: {next:?}");
}

#[test]
fn a_channel_the_organisation_stops_offering_half_way_is_chosen_again() {
    let account = hanna();
    let step = Step::AwaitingCode {
        proven: proven(),
        channel: SMS,
        chosen: true,
        sent: Sent::Yes,
        instead: false,
    };
    let org = org_only(&[MfaMethod::Authenticator, MfaMethod::Email]);
    let next = transition(&step, Event::Show, &ctx(&org, &account));
    assert_eq!(next.step, Step::Choosing { proven: proven() });
    // And its code is no longer taken.
    let code = transition(
        &step,
        Event::CodeRight { trust: false },
        &ctx(&org, &account),
    );
    assert_eq!(code.step, Step::Choosing { proven: proven() });
    assert_eq!(code.view, Some(View::ToMfa));
    assert!(code.effects.is_empty());
}

#[test]
fn a_reset_or_disable_half_way_voids_the_sign_in_whatever_comes_next() {
    let org = all_methods();
    let reset = Account {
        not_valid_before: NOW - 30,
        ..enrolled(APP)
    };
    let disabled = Account {
        disabled: true,
        ..enrolled(APP)
    };
    let step = Step::AwaitingApp {
        proven: proven(),
        instead: false,
    };
    for account in [&reset, &disabled] {
        for event in [
            Event::Show,
            Event::CodeRight { trust: false },
            Event::RecoveryRight { left: 3 },
            Event::Back,
        ] {
            let next = transition(&step, event.clone(), &ctx(&org, account));
            assert_eq!(next.step, Step::Started, "{event:?}");
            assert!(next.effects.is_empty(), "{event:?}");
            assert_eq!(next.view, Some(View::ToLogin), "{event:?}");
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Back

#[test]
fn back_from_a_method_chosen_on_this_visit_goes_to_the_choice_and_otherwise_to_the_start() {
    let org = all_methods();
    let account = hanna();
    let c = ctx(&org, &account);
    for step in [
        Step::AwaitingCode {
            proven: proven(),
            channel: EMAIL,
            chosen: true,
            sent: Sent::Yes,
            instead: false,
        },
        Step::Enrolling {
            proven: proven(),
            chosen: true,
            secret: Some("s".into()),
        },
    ] {
        let next = transition(&step, Event::Back, &c);
        assert_eq!(next.step, Step::Choosing { proven: proven() });
        assert_eq!(next.view, Some(View::ToMfa));
    }
    let next = transition(&Step::Choosing { proven: proven() }, Event::Back, &c);
    assert_eq!(next.step, Step::Started);
    assert_eq!(next.view, Some(View::Restart));
    let stored = enrolled(SMS);
    let step = Step::AwaitingCode {
        proven: proven(),
        channel: SMS,
        chosen: false,
        sent: Sent::Yes,
        instead: false,
    };
    let next = transition(&step, Event::Back, &ctx(&org, &stored));
    assert_eq!(next.view, Some(View::Restart));
}

// ---------------------------------------------------------------------------------------------
// After the sign-in

#[test]
fn a_sign_in_is_fresh_for_ten_minutes_and_turning_on_mfa_needs_a_fresh_one() {
    let org = org(&MfaMethod::ALL, MfaRequirement::Enrolled);
    let account = hanna();
    let done = SignedIn {
        at: NOW - FRESH_SIGN_IN,
        ..signed_in(MfaStatus::None)
    };
    assert!(done.fresh(NOW));
    assert!(!done.fresh(NOW + 1));
    let step = Step::SignedIn(done.clone());
    let next = transition(&step, Event::AddFactor, &ctx(&org, &account));
    assert_eq!(
        next.step,
        Step::Choosing {
            proven: Proven {
                at: done.at,
                ..proven()
            }
        }
    );
    let stale = Ctx {
        now: NOW + 1,
        ..ctx(&org, &account)
    };
    let next = transition(&step, Event::AddFactor, &stale);
    assert_eq!(next.step, step);
    assert_eq!(next.view, Some(View::ToLogin));
}

/// Approving a device needs a sign-in completed in this session, at most [`FRESH_SIGN_IN`]
/// seconds before; on a fixed clock, the edges.
#[test]
fn approving_a_device_needs_a_sign_in_completed_within_ten_minutes() {
    let done_at = |at| SignedIn {
        at,
        ..signed_in(MfaStatus::Yes)
    };
    for (why, step, fresh) in [
        ("nobody signed in", Step::Started, false),
        (
            "half way, the password proven",
            Step::Choosing { proven: proven() },
            false,
        ),
        (
            "half way, a code awaited",
            Step::AwaitingApp {
                proven: proven(),
                instead: false,
            },
            false,
        ),
        ("signed in just now", Step::SignedIn(done_at(NOW)), true),
        (
            "signed in ten minutes ago",
            Step::SignedIn(done_at(NOW - FRESH_SIGN_IN)),
            true,
        ),
        (
            "a second more",
            Step::SignedIn(done_at(NOW - FRESH_SIGN_IN - 1)),
            false,
        ),
        ("an hour ago", Step::SignedIn(done_at(NOW - 3600)), false),
        (
            "with a recovery code, just now",
            Step::SignedIn(SignedIn {
                recovered: true,
                ..done_at(NOW)
            }),
            true,
        ),
    ] {
        let found = step.fresh_sign_in(NOW);
        assert_eq!(found.is_some(), fresh, "{why}");
        if let (Some(found), Step::SignedIn(done)) = (found, &step) {
            assert_eq!(found, done, "{why}");
        }
    }
}

#[test]
fn a_session_completes_with_a_new_form_token_and_keeps_its_device_request() {
    let mut session = LoginSession::new("/rooster".into());
    session.set_device_request(Some("dev".into()));
    let before = session.csrf().to_owned();
    session.enter(Step::Choosing { proven: proven() });
    assert_eq!(session.csrf(), before);
    session.enter(Step::SignedIn(signed_in(MfaStatus::Yes)));
    assert_ne!(session.csrf(), before);
    assert!(session.csrf_ok(session.csrf()));
    assert!(!session.csrf_ok(&before));
    assert!(!session.csrf_ok(""));
    assert_eq!(session.signed_in(), Some(&signed_in(MfaStatus::Yes)));
    session.begin("/".into());
    assert_eq!(session.signed_in(), None);
    assert_eq!(session.device_request(), Some("dev"));
    assert_eq!(session.return_to(), "/");
}

#[test]
fn every_step_survives_the_store_and_a_damaged_session_is_refused() {
    let steps = [
        Step::Started,
        Step::Reproving {
            proven: proven(),
            factor: SMS,
            sent: Sent::Not(SendProblem::Limited { until: NOW }),
        },
        Step::Choosing { proven: proven() },
        Step::Enrolling {
            proven: proven(),
            chosen: true,
            secret: Some("s".into()),
        },
        Step::AwaitingApp {
            proven: proven(),
            instead: false,
        },
        Step::AwaitingCode {
            proven: proven(),
            channel: EMAIL,
            chosen: false,
            sent: Sent::Yes,
            instead: false,
        },
        Step::EnrollingPasskey {
            proven: proven(),
            chosen: true,
        },
        Step::AwaitingPasskey { proven: proven() },
        Step::Reproving {
            proven: proven(),
            factor: PASSKEY,
            sent: Sent::No,
        },
        Step::SignedIn(signed_in(MfaStatus::Exempt)),
    ];
    for step in steps {
        let mut session = LoginSession::new("/".into());
        session.enter(step.clone());
        let json = serde_json::to_vec(&session).unwrap();
        let back: LoginSession = serde_json::from_slice(&json).unwrap();
        assert_eq!(back.step(), &step);
        assert_eq!(back.csrf(), session.csrf());
    }
    for damaged in [
        r#"{"csrf":"x","return_to":"/","step":{"step":"signed_in"}}"#,
        r#"{"csrf":"x","return_to":"/","step":{"step":"awaiting_code","proven":{"org":"o","account":"a","at":1},"channel":"pigeon","chosen":false,"sent":"yes"}}"#,
        r#"{"csrf":"x","return_to":"/"}"#,
    ] {
        assert!(
            serde_json::from_str::<LoginSession>(damaged).is_err(),
            "{damaged}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Every pair

/// A step of the pair table, with an account, a policy and a number of passkeys it is
/// consistent with (so settling keeps it).
struct Case {
    name: &'static str,
    step: Step,
    account: Account,
    org: Organisation,
    passkeys: usize,
}

impl Case {
    fn ctx(&self) -> Ctx<'_> {
        Ctx {
            passkeys: self.passkeys,
            ..ctx(&self.org, &self.account)
        }
    }
}

/// Every variant of every step (each flag that changes what an event does).
fn every_step() -> Vec<Case> {
    let case = |name, step, account, org| Case {
        name,
        step,
        account,
        org,
        passkeys: 0,
    };
    let with_passkey = |name, step, account, org| Case {
        passkeys: 1,
        ..case(name, step, account, org)
    };
    let offers_no_sms = org_only(&[MfaMethod::Authenticator, MfaMethod::Email]);
    let offers_no_app = org_only(&[MfaMethod::Sms, MfaMethod::Email]);
    vec![
        case("started", Step::Started, hanna(), all_methods()),
        case(
            "reproving",
            Step::Reproving {
                proven: proven(),
                factor: SMS,
                sent: Sent::Yes,
            },
            enrolled(SMS),
            offers_no_sms,
        ),
        case(
            "reproving_app",
            Step::Reproving {
                proven: proven(),
                factor: APP,
                sent: Sent::No,
            },
            enrolled(APP),
            offers_no_app,
        ),
        with_passkey(
            "reproving_passkey",
            Step::Reproving {
                proven: proven(),
                factor: PASSKEY,
                sent: Sent::No,
            },
            passkey_only(),
            all_methods(),
        ),
        case(
            "choosing",
            Step::Choosing { proven: proven() },
            hanna(),
            all_methods(),
        ),
        case(
            "enrolling",
            Step::Enrolling {
                proven: proven(),
                chosen: true,
                secret: Some("s".into()),
            },
            hanna(),
            all_methods(),
        ),
        case(
            "enrolling_unsealed",
            Step::Enrolling {
                proven: proven(),
                chosen: false,
                secret: None,
            },
            hanna(),
            org_only(&[MfaMethod::Authenticator]),
        ),
        case(
            "awaiting_app",
            Step::AwaitingApp {
                proven: proven(),
                instead: false,
            },
            enrolled(APP),
            all_methods(),
        ),
        with_passkey(
            "awaiting_app_instead",
            Step::AwaitingApp {
                proven: proven(),
                instead: true,
            },
            enrolled(APP),
            offers_passkeys(),
        ),
        case(
            "awaiting_code",
            Step::AwaitingCode {
                proven: proven(),
                channel: EMAIL,
                chosen: false,
                sent: Sent::Yes,
                instead: false,
            },
            enrolled(EMAIL),
            all_methods(),
        ),
        case(
            "awaiting_code_chosen",
            Step::AwaitingCode {
                proven: proven(),
                channel: EMAIL,
                chosen: true,
                sent: Sent::Yes,
                instead: false,
            },
            hanna(),
            all_methods(),
        ),
        case(
            "awaiting_code_instead",
            Step::AwaitingCode {
                proven: proven(),
                channel: EMAIL,
                chosen: false,
                sent: Sent::Yes,
                instead: true,
            },
            enrolled(APP),
            all_methods(),
        ),
        case(
            "enrolling_passkey",
            Step::EnrollingPasskey {
                proven: proven(),
                chosen: true,
            },
            hanna(),
            offers_passkeys(),
        ),
        case(
            "enrolling_passkey_first",
            Step::EnrollingPasskey {
                proven: proven(),
                chosen: false,
            },
            hanna(),
            org_only(&[MfaMethod::Passkey]),
        ),
        with_passkey(
            "awaiting_passkey",
            Step::AwaitingPasskey { proven: proven() },
            passkey_only(),
            passwordless_org(),
        ),
        case(
            "signed_in",
            Step::SignedIn(signed_in(MfaStatus::Yes)),
            hanna(),
            all_methods(),
        ),
        case(
            "signed_in_recovered",
            Step::SignedIn(SignedIn {
                recovered: true,
                ..signed_in(MfaStatus::Yes)
            }),
            enrolled(APP),
            all_methods(),
        ),
    ]
}

fn every_event() -> Vec<(&'static str, Event<'static>)> {
    vec![
        ("password_ok", Event::PasswordOk),
        (
            "provider_vouched",
            Event::ProviderVouched(ProviderMfa::Certgate),
        ),
        ("add_factor", Event::AddFactor),
        ("show", Event::Show),
        ("secret_sealed", Event::SecretSealed("new".into())),
        ("chose", Event::Chose("email")),
        ("instead", Event::Instead("sms")),
        ("replace_factor", Event::ReplaceFactor),
        ("resend", Event::Resend),
        ("code_sent", Event::CodeSent { again: false }),
        (
            "code_not_sent",
            Event::CodeNotSent {
                again: false,
                problem: SendProblem::Failed,
            },
        ),
        ("code_right", Event::CodeRight { trust: false }),
        (
            "code_wrong",
            Event::CodeWrong {
                trust: false,
                gone: false,
            },
        ),
        ("recovery_right", Event::RecoveryRight { left: 1 }),
        ("recovery_wrong", Event::RecoveryWrong),
        ("back", Event::Back),
        (
            "passkey_made",
            Event::PasskeyMade {
                passkey: "{}",
                trust: false,
            },
        ),
        ("passkey_wrong", Event::PasskeyWrong { cloned: false }),
        ("passkey_sign_in", Event::PasskeySignIn),
    ]
}

/// The pairs the machine refuses ([`Next::refused`]): the step stays, nothing is carried out, and
/// the visitor is sent to this page (`None`: an effect's answer that no longer applies,
/// ignored). Every other pair is taken.
const REFUSED: &[(&str, &str, Option<View>)] = &[
    // Nothing under way: every event but a first step goes to the sign-in page.
    ("started", "add_factor", Some(View::ToLogin)),
    ("started", "show", Some(View::ToLogin)),
    ("started", "secret_sealed", Some(View::ToLogin)),
    ("started", "chose", Some(View::ToLogin)),
    ("started", "instead", Some(View::ToLogin)),
    ("started", "replace_factor", Some(View::ToLogin)),
    ("started", "resend", Some(View::ToLogin)),
    ("started", "code_sent", Some(View::ToLogin)),
    ("started", "code_not_sent", Some(View::ToLogin)),
    ("started", "code_right", Some(View::ToLogin)),
    ("started", "code_wrong", Some(View::ToLogin)),
    ("started", "recovery_right", Some(View::ToLogin)),
    ("started", "recovery_wrong", Some(View::ToLogin)),
    ("started", "back", Some(View::ToLogin)),
    ("started", "passkey_made", Some(View::ToLogin)),
    ("started", "passkey_wrong", Some(View::ToLogin)),
    ("started", "passkey_sign_in", Some(View::ToLogin)),
    // Everywhere past the password: a factor is added or replaced only from a completed sign-in
    // (a replacement only right after a recovery code); a passkey alone signs in only where
    // the organisation is passwordless and the account has one (only the passkey step's
    // organisation and account are: there it is taken, whatever the step).
    ("reproving", "add_factor", Some(View::ToLogin)),
    ("reproving", "replace_factor", Some(View::ToLogin)),
    ("reproving", "passkey_sign_in", Some(View::ToLogin)),
    ("reproving_app", "add_factor", Some(View::ToLogin)),
    ("reproving_app", "replace_factor", Some(View::ToLogin)),
    ("reproving_app", "passkey_sign_in", Some(View::ToLogin)),
    ("reproving_passkey", "add_factor", Some(View::ToLogin)),
    ("reproving_passkey", "replace_factor", Some(View::ToLogin)),
    ("reproving_passkey", "passkey_sign_in", Some(View::ToLogin)),
    ("choosing", "add_factor", Some(View::ToLogin)),
    ("choosing", "replace_factor", Some(View::ToLogin)),
    ("choosing", "passkey_sign_in", Some(View::ToLogin)),
    ("enrolling", "add_factor", Some(View::ToLogin)),
    ("enrolling", "replace_factor", Some(View::ToLogin)),
    ("enrolling", "passkey_sign_in", Some(View::ToLogin)),
    ("enrolling_unsealed", "add_factor", Some(View::ToLogin)),
    ("enrolling_unsealed", "replace_factor", Some(View::ToLogin)),
    ("enrolling_unsealed", "passkey_sign_in", Some(View::ToLogin)),
    ("awaiting_app", "add_factor", Some(View::ToLogin)),
    ("awaiting_app", "replace_factor", Some(View::ToLogin)),
    ("awaiting_app", "passkey_sign_in", Some(View::ToLogin)),
    ("awaiting_app_instead", "add_factor", Some(View::ToLogin)),
    (
        "awaiting_app_instead",
        "replace_factor",
        Some(View::ToLogin),
    ),
    (
        "awaiting_app_instead",
        "passkey_sign_in",
        Some(View::ToLogin),
    ),
    ("awaiting_code", "add_factor", Some(View::ToLogin)),
    ("awaiting_code", "replace_factor", Some(View::ToLogin)),
    ("awaiting_code", "passkey_sign_in", Some(View::ToLogin)),
    ("awaiting_code_chosen", "add_factor", Some(View::ToLogin)),
    (
        "awaiting_code_chosen",
        "replace_factor",
        Some(View::ToLogin),
    ),
    (
        "awaiting_code_chosen",
        "passkey_sign_in",
        Some(View::ToLogin),
    ),
    ("awaiting_code_instead", "add_factor", Some(View::ToLogin)),
    (
        "awaiting_code_instead",
        "replace_factor",
        Some(View::ToLogin),
    ),
    (
        "awaiting_code_instead",
        "passkey_sign_in",
        Some(View::ToLogin),
    ),
    ("enrolling_passkey", "add_factor", Some(View::ToLogin)),
    ("enrolling_passkey", "replace_factor", Some(View::ToLogin)),
    ("enrolling_passkey", "passkey_sign_in", Some(View::ToLogin)),
    ("enrolling_passkey_first", "add_factor", Some(View::ToLogin)),
    (
        "enrolling_passkey_first",
        "replace_factor",
        Some(View::ToLogin),
    ),
    (
        "enrolling_passkey_first",
        "passkey_sign_in",
        Some(View::ToLogin),
    ),
    ("awaiting_passkey", "add_factor", Some(View::ToLogin)),
    ("awaiting_passkey", "replace_factor", Some(View::ToLogin)),
    // A sealed secret is kept only by an enrolment that waits for one.
    ("reproving", "secret_sealed", None),
    ("reproving_app", "secret_sealed", None),
    ("reproving_passkey", "secret_sealed", None),
    ("choosing", "secret_sealed", None),
    ("enrolling", "secret_sealed", None),
    ("awaiting_app", "secret_sealed", None),
    ("awaiting_app_instead", "secret_sealed", None),
    ("awaiting_code", "secret_sealed", None),
    ("awaiting_code_chosen", "secret_sealed", None),
    ("awaiting_code_instead", "secret_sealed", None),
    ("enrolling_passkey", "secret_sealed", None),
    ("enrolling_passkey_first", "secret_sealed", None),
    ("awaiting_passkey", "secret_sealed", None),
    // The old factor first: no choice, no other way; an app or a passkey has no code to send
    // (a send's answers keep the SMS code that went out), and no new passkey is made here.
    ("reproving", "chose", Some(View::ToMfa)),
    ("reproving", "instead", Some(View::ToMfa)),
    ("reproving", "passkey_made", Some(View::ToMfa)),
    ("reproving", "passkey_wrong", Some(View::ToMfa)),
    ("reproving_app", "chose", Some(View::ToMfa)),
    ("reproving_app", "instead", Some(View::ToMfa)),
    ("reproving_app", "resend", Some(View::ToMfa)),
    ("reproving_app", "code_sent", None),
    ("reproving_app", "code_not_sent", None),
    ("reproving_app", "passkey_made", Some(View::ToMfa)),
    ("reproving_app", "passkey_wrong", Some(View::ToMfa)),
    ("reproving_passkey", "chose", Some(View::ToMfa)),
    ("reproving_passkey", "instead", Some(View::ToMfa)),
    ("reproving_passkey", "resend", Some(View::ToMfa)),
    ("reproving_passkey", "code_sent", None),
    ("reproving_passkey", "code_not_sent", None),
    ("reproving_passkey", "passkey_made", Some(View::ToMfa)),
    // Choosing: there is no code or passkey to send or check, and no factor to set aside.
    ("choosing", "instead", Some(View::ToMfa)),
    ("choosing", "resend", Some(View::ToMfa)),
    ("choosing", "code_sent", None),
    ("choosing", "code_not_sent", None),
    ("choosing", "code_right", Some(View::ToMfa)),
    ("choosing", "code_wrong", Some(View::ToMfa)),
    ("choosing", "passkey_made", Some(View::ToMfa)),
    ("choosing", "passkey_wrong", Some(View::ToMfa)),
    // Enrolling the app: nothing to send, no factor to set aside, no passkey; before its secret
    // is sealed no code can match, and an enrolment not chosen here is not chosen again.
    ("enrolling", "instead", Some(View::ToMfa)),
    ("enrolling", "resend", Some(View::ToMfa)),
    ("enrolling", "code_sent", None),
    ("enrolling", "code_not_sent", None),
    ("enrolling", "passkey_made", Some(View::ToMfa)),
    ("enrolling", "passkey_wrong", Some(View::ToMfa)),
    ("enrolling_unsealed", "chose", Some(View::ToMfa)),
    ("enrolling_unsealed", "instead", Some(View::ToMfa)),
    ("enrolling_unsealed", "resend", Some(View::ToMfa)),
    ("enrolling_unsealed", "code_sent", None),
    ("enrolling_unsealed", "code_not_sent", None),
    ("enrolling_unsealed", "code_right", Some(View::ToMfa)),
    ("enrolling_unsealed", "code_wrong", Some(View::ToMfa)),
    ("enrolling_unsealed", "passkey_made", Some(View::ToMfa)),
    ("enrolling_unsealed", "passkey_wrong", Some(View::ToMfa)),
    // The account's app: a stored factor is not changed by a choice, an app code is not sent,
    // and no passkey is made or asked for; picked as another way, there is no further way.
    ("awaiting_app", "chose", Some(View::ToMfa)),
    ("awaiting_app", "resend", Some(View::ToMfa)),
    ("awaiting_app", "code_sent", None),
    ("awaiting_app", "code_not_sent", None),
    ("awaiting_app", "passkey_made", Some(View::ToMfa)),
    ("awaiting_app", "passkey_wrong", Some(View::ToMfa)),
    ("awaiting_app_instead", "chose", Some(View::ToMfa)),
    ("awaiting_app_instead", "instead", Some(View::ToMfa)),
    ("awaiting_app_instead", "resend", Some(View::ToMfa)),
    ("awaiting_app_instead", "code_sent", None),
    ("awaiting_app_instead", "code_not_sent", None),
    ("awaiting_app_instead", "passkey_made", Some(View::ToMfa)),
    ("awaiting_app_instead", "passkey_wrong", Some(View::ToMfa)),
    // A code by a channel: a stored channel is not changed by a choice, no passkey is made or
    // asked for; one chosen on this visit, or picked as another way, has no other way.
    ("awaiting_code", "chose", Some(View::ToMfa)),
    ("awaiting_code", "passkey_made", Some(View::ToMfa)),
    ("awaiting_code", "passkey_wrong", Some(View::ToMfa)),
    ("awaiting_code_chosen", "instead", Some(View::ToMfa)),
    ("awaiting_code_chosen", "passkey_made", Some(View::ToMfa)),
    ("awaiting_code_chosen", "passkey_wrong", Some(View::ToMfa)),
    ("awaiting_code_instead", "chose", Some(View::ToMfa)),
    ("awaiting_code_instead", "instead", Some(View::ToMfa)),
    ("awaiting_code_instead", "passkey_made", Some(View::ToMfa)),
    ("awaiting_code_instead", "passkey_wrong", Some(View::ToMfa)),
    // Making a passkey: no code to send or check (a new passkey is told as `passkey_made`; a
    // "right" answer makes none), no other way (there is no factor yet); one not chosen here is
    // not chosen again.
    ("enrolling_passkey", "instead", Some(View::ToMfa)),
    ("enrolling_passkey", "resend", Some(View::ToMfa)),
    ("enrolling_passkey", "code_sent", None),
    ("enrolling_passkey", "code_not_sent", None),
    ("enrolling_passkey", "code_right", Some(View::ToMfa)),
    ("enrolling_passkey_first", "chose", Some(View::ToMfa)),
    ("enrolling_passkey_first", "instead", Some(View::ToMfa)),
    ("enrolling_passkey_first", "resend", Some(View::ToMfa)),
    ("enrolling_passkey_first", "code_sent", None),
    ("enrolling_passkey_first", "code_not_sent", None),
    ("enrolling_passkey_first", "code_right", Some(View::ToMfa)),
    // Waiting for the account's passkey: nothing is sent, nothing chosen, and a new passkey is
    // not made in place of the one asked for.
    ("awaiting_passkey", "chose", Some(View::ToMfa)),
    ("awaiting_passkey", "resend", Some(View::ToMfa)),
    ("awaiting_passkey", "code_sent", None),
    ("awaiting_passkey", "code_not_sent", None),
    ("awaiting_passkey", "passkey_made", Some(View::ToMfa)),
    // Signed in: the second-factor pages are over; a new sign-in starts at the sign-in page. A
    // factor is replaced only right after a recovery code (this sign-in was not one).
    ("signed_in", "show", Some(View::ToLogin)),
    ("signed_in", "secret_sealed", Some(View::ToLogin)),
    ("signed_in", "chose", Some(View::ToLogin)),
    ("signed_in", "instead", Some(View::ToLogin)),
    ("signed_in", "replace_factor", Some(View::ToLogin)),
    ("signed_in", "resend", Some(View::ToLogin)),
    ("signed_in", "code_sent", Some(View::ToLogin)),
    ("signed_in", "code_not_sent", Some(View::ToLogin)),
    ("signed_in", "code_right", Some(View::ToLogin)),
    ("signed_in", "code_wrong", Some(View::ToLogin)),
    ("signed_in", "recovery_right", Some(View::ToLogin)),
    ("signed_in", "recovery_wrong", Some(View::ToLogin)),
    ("signed_in", "back", Some(View::ToLogin)),
    ("signed_in", "passkey_made", Some(View::ToLogin)),
    ("signed_in", "passkey_wrong", Some(View::ToLogin)),
    ("signed_in", "passkey_sign_in", Some(View::ToLogin)),
    ("signed_in_recovered", "show", Some(View::ToLogin)),
    ("signed_in_recovered", "secret_sealed", Some(View::ToLogin)),
    ("signed_in_recovered", "chose", Some(View::ToLogin)),
    ("signed_in_recovered", "instead", Some(View::ToLogin)),
    ("signed_in_recovered", "resend", Some(View::ToLogin)),
    ("signed_in_recovered", "code_sent", Some(View::ToLogin)),
    ("signed_in_recovered", "code_not_sent", Some(View::ToLogin)),
    ("signed_in_recovered", "code_right", Some(View::ToLogin)),
    ("signed_in_recovered", "code_wrong", Some(View::ToLogin)),
    ("signed_in_recovered", "recovery_right", Some(View::ToLogin)),
    ("signed_in_recovered", "recovery_wrong", Some(View::ToLogin)),
    ("signed_in_recovered", "back", Some(View::ToLogin)),
    ("signed_in_recovered", "passkey_made", Some(View::ToLogin)),
    ("signed_in_recovered", "passkey_wrong", Some(View::ToLogin)),
    (
        "signed_in_recovered",
        "passkey_sign_in",
        Some(View::ToLogin),
    ),
];

#[test]
fn every_pair_of_step_and_event_is_taken_or_named_as_refused() {
    let mut refused_seen = 0;
    for case in every_step() {
        let (step_name, step, account) = (case.name, &case.step, &case.account);
        let c = case.ctx();
        // Settling a consistent step keeps it.
        if let Some(proven) = step.proven() {
            assert_eq!(settle(step, proven.clone(), &c), *step, "{step_name}");
        }
        for (event_name, event) in every_event() {
            let next = transition(step, event, &c);
            let listed = REFUSED
                .iter()
                .find(|(s, e, _)| *s == step_name && *e == event_name);
            let pair = format!("{step_name} + {event_name}: {next:?}");
            match listed {
                Some((_, _, view)) => {
                    refused_seen += 1;
                    assert!(next.refused, "{pair} is named as refused but taken");
                    assert_eq!(next.step, *step, "{pair}");
                    assert!(next.effects.is_empty(), "{pair}");
                    assert_eq!(next.view, *view, "{pair}");
                }
                None => {
                    assert!(!next.refused, "{pair} is refused but not named");
                    // Taken without a change, it shows the step's page (or is an effect's
                    // answer): a bare redirect that changes nothing is a refusal in disguise.
                    if next.step == *step && next.effects.is_empty() {
                        assert!(
                            matches!(next.view, None | Some(View::Page { .. })),
                            "{pair} changes nothing but is not a refusal"
                        );
                    }
                }
            }
            // Whatever happens, a credential is issued only on the way to signed in, with the
            // account of the context.
            if next.effects.iter().any(|e| matches!(e, Effect::Issue(_))) {
                assert!(
                    matches!(&next.step, Step::SignedIn(s) if s.account == account.id && s.at == NOW),
                    "{pair}"
                );
                assert!(matches!(next.view, Some(View::Done(_))), "{pair}");
            }
        }
    }
    assert_eq!(refused_seen, REFUSED.len(), "every refusal listed happens");
}

#[test]
fn a_credential_is_issued_only_after_a_right_answer() {
    // Of every pair, those that issue one: the first step, a right code, a right recovery code,
    // a new passkey, a passkey alone.
    for case in every_step() {
        let c = case.ctx();
        for (event_name, event) in every_event() {
            let issues = transition(&case.step, event.clone(), &c)
                .effects
                .iter()
                .any(|e| matches!(e, Effect::Issue(_)));
            let answer = matches!(
                event,
                Event::PasswordOk
                    | Event::ProviderVouched(_)
                    | Event::CodeRight { .. }
                    | Event::RecoveryRight { .. }
                    | Event::PasskeyMade { .. }
                    | Event::PasskeySignIn
            );
            if issues {
                assert!(answer, "{} + {event_name}", case.name);
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Sign in another way

/// The phone with the app is at home: an e-mail code signs this one sign-in in, and the app
/// stays the account's factor.
#[test]
fn another_way_signs_in_once_and_keeps_the_factor() {
    let org = all_methods();
    let account = enrolled(APP);
    let c = ctx(&org, &account);
    let waiting = Step::AwaitingApp {
        proven: proven(),
        instead: false,
    };
    assert_eq!(alternatives(&waiting, &c), [SMS, EMAIL]);

    let instead = transition(&waiting, Event::Instead("email"), &c);
    let expected = Step::AwaitingCode {
        proven: proven(),
        channel: EMAIL,
        chosen: false,
        sent: Sent::No,
        instead: true,
    };
    assert_eq!(instead.step, expected);
    assert_eq!(
        instead.effects,
        [Effect::SendCode {
            channel: EMAIL,
            again: false
        }]
    );
    assert_eq!(instead.view, Some(View::ToMfa));
    // It stays the step while it is one (the page loads settle it again).
    assert_eq!(settle(&expected, proven(), &c), expected);
    let sent = transition(&expected, Event::CodeSent { again: false }, &c).step;
    // A right code signs in; nothing is stored, nobody is told of a new factor.
    let right = transition(&sent, Event::CodeRight { trust: false }, &c);
    assert_eq!(
        right.effects,
        [
            counted(Method::Factor(EMAIL), true),
            issued(Method::Factor(EMAIL), MfaStatus::Yes, false)
        ]
    );
    // "Back" returns to the app.
    let back = transition(&sent, Event::Back, &c);
    assert_eq!(back.step, waiting);
    assert!(back.effects.is_empty(), "{:?}", back.effects);
    // Once the step is another way, the other channel is not offered from it.
    assert!(alternatives(&sent, &c).is_empty());
}

/// Never a new authenticator, never a channel the account cannot be reached by or the
/// organisation does not offer, never for a group tablet.
#[test]
fn another_way_is_only_a_code_to_what_the_account_has() {
    let all = all_methods();
    let stored_sms = enrolled(SMS);
    let c = ctx(&all, &stored_sms);
    let waiting = Step::AwaitingCode {
        proven: proven(),
        channel: SMS,
        chosen: false,
        sent: Sent::Yes,
        instead: false,
    };
    assert_eq!(alternatives(&waiting, &c), [EMAIL]);
    for refused in ["authenticator", "sms", "pigeon"] {
        let next = transition(&waiting, Event::Instead(refused), &c);
        assert_eq!(next.step, waiting, "{refused}");
        assert!(next.effects.is_empty(), "{refused}");
    }
    let no_address = Account {
        email: None,
        ..enrolled(SMS)
    };
    assert!(alternatives(&waiting, &ctx(&all, &no_address)).is_empty());
    let app_only = org(
        &[MfaMethod::Authenticator, MfaMethod::Sms],
        MfaRequirement::All,
    );
    assert!(alternatives(&waiting, &ctx(&app_only, &stored_sms)).is_empty());
    let tablet = Account {
        kind: AccountKind::Group,
        ..enrolled(APP)
    };
    let app = Step::AwaitingApp {
        proven: proven(),
        instead: false,
    };
    assert!(alternatives(&app, &ctx(&all, &tablet)).is_empty());
    // The organisation stops offering e-mail half way: the next page is the account's own
    // factor again.
    let instead = Step::AwaitingCode {
        proven: proven(),
        channel: EMAIL,
        chosen: false,
        sent: Sent::Yes,
        instead: true,
    };
    assert_eq!(
        settle(&instead, proven(), &ctx(&app_only, &stored_sms)),
        Step::AwaitingCode {
            proven: proven(),
            channel: SMS,
            chosen: false,
            sent: Sent::No,
            instead: false,
        }
    );
}

// ---------------------------------------------------------------------------------------------
// A lost phone, without the administrator

/// Signed in with a recovery code, the person sets up a new factor at once: the lost one is not
/// asked for, the first right code of the new one replaces it (with new recovery codes, an
/// audit entry and a mail), for any method.
#[test]
fn after_a_recovery_code_a_new_factor_replaces_the_lost_one() {
    let org = all_methods();
    let account = enrolled(APP);
    let c = ctx(&org, &account);
    let recovered = Step::SignedIn(SignedIn {
        recovered: true,
        ..signed_in(MfaStatus::Yes)
    });
    let replacing = Proven {
        at: NOW,
        replacing: true,
        ..proven()
    };
    let next = transition(&recovered, Event::ReplaceFactor, &c);
    assert_eq!(
        next.step,
        Step::Choosing {
            proven: replacing.clone()
        }
    );
    assert_eq!(next.view, Some(View::ToMfa));
    let chose = transition(&next.step, Event::Chose("email"), &c);
    let sent = transition(&chose.step, Event::CodeSent { again: false }, &c);
    let right = transition(&sent.step, Event::CodeRight { trust: false }, &c);
    assert_eq!(
        right.effects,
        [
            // Passkeys may be on the lost phone too.
            Effect::RemovePasskeys,
            Effect::StoreFactor {
                factor: EMAIL,
                secret: None,
                recovery_codes: true,
                replacing: true,
            },
            Effect::Audit(Audit::FactorReplaced(EMAIL)),
            Effect::NotifyFactorAdded(EMAIL),
            counted(Method::Factor(EMAIL), true),
            issued(Method::Factor(EMAIL), MfaStatus::Yes, false),
        ]
    );
    assert_eq!(right.view, Some(View::Done(Finish::RecoveryCodes)));
    // A new authenticator the same way.
    let enrol = transition(&next.step, Event::Chose("authenticator"), &c);
    let sealed = transition(&enrol.step, Event::SecretSealed("sealed-new".into()), &c);
    let right = transition(&sealed.step, Event::CodeRight { trust: false }, &c);
    assert_eq!(right.effects[0], Effect::RemovePasskeys);
    assert_eq!(right.effects[2], Effect::Audit(Audit::FactorReplaced(APP)));
}

/// Only right after a recovery code, and only while the sign-in is fresh: a password and a
/// browser cookie never replace a factor.
#[test]
fn only_a_fresh_recovery_sign_in_may_replace_the_factor() {
    let org = all_methods();
    let account = enrolled(APP);
    let c = ctx(&org, &account);
    for done in [
        signed_in(MfaStatus::Yes),
        SignedIn {
            recovered: true,
            at: NOW - FRESH_SIGN_IN - 1,
            ..signed_in(MfaStatus::Yes)
        },
    ] {
        let step = Step::SignedIn(done);
        let next = transition(&step, Event::ReplaceFactor, &c);
        assert_eq!(next.step, step);
        assert!(next.effects.is_empty());
        assert_eq!(next.view, Some(View::ToLogin));
    }
    // Half way through a sign-in there is nothing to replace.
    let waiting = Step::AwaitingApp {
        proven: proven(),
        instead: false,
    };
    let next = transition(&waiting, Event::ReplaceFactor, &c);
    assert_eq!(next.step, waiting);
    assert!(next.effects.is_empty());
}

// ---------------------------------------------------------------------------------------------
// Passkeys

/// An organisation offering every method, passkeys too (they are offered only where listed).
fn offers_passkeys() -> Organisation {
    org_only(&[
        MfaMethod::Authenticator,
        MfaMethod::Sms,
        MfaMethod::Email,
        MfaMethod::Passkey,
    ])
}

/// [`offers_passkeys`], where a passkey alone signs in.
fn passwordless_org() -> Organisation {
    let mut org = offers_passkeys();
    org.mfa.passwordless = true;
    org
}

/// Hanna with a passkey as her only factor: enrolled, with recovery codes, and no method stored
/// (passkeys are counted in the context, never stored as the method).
fn passkey_only() -> Account {
    Account {
        mfa_enrolled: true,
        recovery_codes: vec!["hash".into()],
        ..hanna()
    }
}

/// The account has one passkey.
fn passkey_ctx<'a>(org: &'a Organisation, account: &'a Account) -> Ctx<'a> {
    Ctx {
        passkeys: 1,
        ..ctx(org, account)
    }
}

fn tablet() -> Account {
    Account {
        kind: AccountKind::Group,
        ..enrolled(APP)
    }
}

/// Where the organisation lists passkeys the choice page offers one; the browser makes it, and
/// the first factor signs in and shows ten recovery codes to write down.
#[test]
fn a_passkey_can_be_chosen_and_a_first_one_signs_in_with_recovery_codes() {
    let org = offers_passkeys();
    let account = hanna();
    let c = ctx(&org, &account);
    assert_eq!(offered_methods(&c), [APP, SMS, EMAIL, PASSKEY]);
    let unlisted = all_methods();
    assert!(!offered_methods(&ctx(&unlisted, &account)).contains(&PASSKEY));

    let chose = transition(
        &Step::Choosing { proven: proven() },
        Event::Chose("passkey"),
        &c,
    );
    let making = Step::EnrollingPasskey {
        proven: proven(),
        chosen: true,
    };
    assert_eq!(chose.step, making);
    assert!(chose.effects.is_empty(), "nothing is sent for a passkey");
    assert_eq!(chose.view, Some(View::ToMfa));
    assert_eq!(making.awaiting(), Some(Awaiting::NewPasskey));
    // Page loads keep it.
    assert_eq!(settle(&making, proven(), &c), making);

    let made = transition(
        &making,
        Event::PasskeyMade {
            passkey: r#"{"key":"new"}"#,
            trust: true,
        },
        &c,
    );
    assert_eq!(made.step, Step::SignedIn(signed_in(MfaStatus::Yes)));
    assert_eq!(
        made.effects,
        [
            Effect::StorePasskey {
                passkey: r#"{"key":"new"}"#.into(),
                recovery_codes: true,
                replacing: false,
            },
            Effect::Audit(Audit::FactorEnrolled(PASSKEY)),
            Effect::NotifyFactorAdded(PASSKEY),
            counted(Method::Factor(PASSKEY), true),
            issued(Method::Factor(PASSKEY), MfaStatus::Yes, true),
        ]
    );
    assert_eq!(made.view, Some(View::Done(Finish::RecoveryCodes)));

    // "Back" goes to the choice.
    let back = transition(&making, Event::Back, &c);
    assert_eq!(back.step, Step::Choosing { proven: proven() });
    assert!(back.effects.is_empty());
    assert_eq!(back.view, Some(View::ToMfa));
}

/// An account that has recovery codes (from the authenticator its organisation stopped
/// offering, proven first) keeps them: a new passkey shows none.
#[test]
fn a_passkey_made_by_an_account_with_recovery_codes_shows_no_new_ones() {
    let org = org_only(&[MfaMethod::Sms, MfaMethod::Passkey]);
    let account = enrolled(APP);
    let c = ctx(&org, &account);
    let reproved = Proven {
        reproved: true,
        ..proven()
    };
    let choosing = Step::Choosing {
        proven: reproved.clone(),
    };
    assert_eq!(settle(&Step::Started, reproved.clone(), &c), choosing);
    let chose = transition(&choosing, Event::Chose("passkey"), &c);
    let made = transition(
        &chose.step,
        Event::PasskeyMade {
            passkey: "pk",
            trust: false,
        },
        &c,
    );
    assert_eq!(
        made.effects,
        [
            Effect::StorePasskey {
                passkey: "pk".into(),
                recovery_codes: false,
                replacing: false,
            },
            Effect::Audit(Audit::FactorEnrolled(PASSKEY)),
            Effect::NotifyFactorAdded(PASSKEY),
            counted(Method::Factor(PASSKEY), true),
            issued(Method::Factor(PASSKEY), MfaStatus::Yes, false),
        ]
    );
    assert_eq!(made.view, Some(View::Done(Finish::Return)));
}

/// An organisation that offers only passkeys has nothing to choose: a person without a factor
/// makes one at once, and "back" is the sign-in page.
#[test]
fn where_passkeys_are_all_that_is_offered_a_first_one_is_made_at_once() {
    let org = org_only(&[MfaMethod::Passkey]);
    let account = hanna();
    let c = ctx(&org, &account);
    let next = transition(&Step::Started, Event::PasswordOk, &c);
    let making = Step::EnrollingPasskey {
        proven: Proven {
            at: NOW,
            ..proven()
        },
        chosen: false,
    };
    assert_eq!(next.step, making);
    assert_eq!(
        next.effects,
        [counted(Method::Password, true), Effect::RotateSession]
    );
    assert_eq!(next.step.awaiting(), Some(Awaiting::NewPasskey));
    // Not chosen, so not to be chosen again.
    let chose = transition(&making, Event::Chose("passkey"), &c);
    assert_eq!(chose.step, making);
    assert!(chose.effects.is_empty());
    let back = transition(&making, Event::Back, &c);
    assert_eq!(back.step, Step::Started);
    assert_eq!(back.view, Some(View::Restart));
}

/// The passkey comes first where the account has one; the authenticator it enrolled before, or
/// a code, is "another way" for this sign-in, and "back" returns to the passkey.
#[test]
fn an_account_with_a_passkey_is_asked_for_it_first_and_its_app_is_another_way() {
    let org = offers_passkeys();
    let account = enrolled(APP);
    let c = passkey_ctx(&org, &account);
    let next = transition(&Step::Started, Event::PasswordOk, &c);
    assert_eq!(
        next.step,
        Step::AwaitingPasskey {
            proven: Proven {
                at: NOW,
                ..proven()
            },
        }
    );
    assert_eq!(
        next.effects,
        [counted(Method::Password, true), Effect::RotateSession],
        "nothing is sent"
    );
    assert_eq!(next.step.awaiting(), Some(Awaiting::Passkey));

    let waiting = Step::AwaitingPasskey { proven: proven() };
    assert_eq!(alternatives(&waiting, &c), [APP, SMS, EMAIL]);
    // The passkey is not another way to itself.
    let itself = transition(&waiting, Event::Instead("passkey"), &c);
    assert_eq!(itself.step, waiting);
    assert!(itself.effects.is_empty());

    let instead = transition(&waiting, Event::Instead("authenticator"), &c);
    let app = Step::AwaitingApp {
        proven: proven(),
        instead: true,
    };
    assert_eq!(instead.step, app);
    assert!(instead.effects.is_empty(), "{:?}", instead.effects);
    assert_eq!(instead.view, Some(View::ToMfa));
    // It stays the step while it is one.
    assert_eq!(settle(&app, proven(), &c), app);
    assert_eq!(app.awaiting(), Some(Awaiting::App));
    assert!(alternatives(&app, &c).is_empty());

    let right = transition(&app, Event::CodeRight { trust: false }, &c);
    assert_eq!(right.step, Step::SignedIn(signed_in(MfaStatus::Yes)));
    assert_eq!(
        right.effects,
        [
            counted(Method::Factor(APP), true),
            issued(Method::Factor(APP), MfaStatus::Yes, false)
        ]
    );
    let back = transition(&app, Event::Back, &c);
    assert_eq!(back.step, waiting);
    assert!(back.effects.is_empty(), "{:?}", back.effects);
    assert_eq!(back.view, Some(View::ToMfa));
}

/// A passkey that checked out signs in with a second factor, counted as a passkey.
#[test]
fn a_passkey_that_checked_out_signs_in() {
    let org = offers_passkeys();
    let account = passkey_only();
    let c = passkey_ctx(&org, &account);
    let waiting = Step::AwaitingPasskey { proven: proven() };
    assert_eq!(settle(&Step::Started, proven(), &c), waiting);
    let right = transition(&waiting, Event::CodeRight { trust: true }, &c);
    assert_eq!(right.step, Step::SignedIn(signed_in(MfaStatus::Yes)));
    assert_eq!(
        right.effects,
        [
            counted(Method::Factor(PASSKEY), true),
            issued(Method::Factor(PASSKEY), MfaStatus::Yes, true)
        ]
    );
    assert_eq!(right.view, Some(View::Done(Finish::Return)));
}

/// Where the organisation does not offer passkeys, an account's passkey is neither asked for
/// nor another way: its own SMS code is sent.
#[test]
fn a_passkey_the_organisation_does_not_offer_is_set_aside_for_the_accounts_own_factor() {
    let org = all_methods();
    let account = enrolled(SMS);
    let c = passkey_ctx(&org, &account);
    let next = transition(&Step::Started, Event::PasswordOk, &c);
    let waiting = Step::AwaitingCode {
        proven: Proven {
            at: NOW,
            ..proven()
        },
        channel: SMS,
        chosen: false,
        sent: Sent::No,
        instead: false,
    };
    assert_eq!(next.step, waiting);
    assert!(next.effects.contains(&Effect::SendCode {
        channel: SMS,
        again: false
    }));
    assert_eq!(alternatives(&waiting, &c), [EMAIL]);
    let refused = transition(&waiting, Event::Instead("passkey"), &c);
    assert_eq!(refused.step, waiting);
    assert!(refused.effects.is_empty());
}

/// An account with a mobile number and a passkey is asked for the passkey; "another way" sends
/// an SMS code for this sign-in only, and "back" sends nothing.
#[test]
fn an_sms_code_is_another_way_next_to_a_passkey_and_stores_nothing() {
    let org = offers_passkeys();
    let account = enrolled(SMS);
    let c = passkey_ctx(&org, &account);
    let waiting = Step::AwaitingPasskey { proven: proven() };
    assert_eq!(settle(&Step::Started, proven(), &c), waiting);
    assert_eq!(alternatives(&waiting, &c), [SMS, EMAIL]);
    let instead = transition(&waiting, Event::Instead("sms"), &c);
    let expected = Step::AwaitingCode {
        proven: proven(),
        channel: SMS,
        chosen: false,
        sent: Sent::No,
        instead: true,
    };
    assert_eq!(instead.step, expected);
    assert_eq!(
        instead.effects,
        [Effect::SendCode {
            channel: SMS,
            again: false
        }]
    );
    assert_eq!(instead.view, Some(View::ToMfa));
    assert_eq!(settle(&expected, proven(), &c), expected);
    let sent = transition(&expected, Event::CodeSent { again: false }, &c).step;
    assert_eq!(sent.awaiting(), Some(Awaiting::Code(SMS)));
    let right = transition(&sent, Event::CodeRight { trust: false }, &c);
    assert_eq!(
        right.effects,
        [
            counted(Method::Factor(SMS), true),
            issued(Method::Factor(SMS), MfaStatus::Yes, false)
        ]
    );
    let back = transition(&sent, Event::Back, &c);
    assert_eq!(back.step, waiting);
    assert!(back.effects.is_empty(), "no code for a passkey");
}

/// A passkey that does not prove the account is counted, audited and refused like a wrong code;
/// one whose signature counter went back is a copy, and the audit log says so.
#[test]
fn a_passkey_that_fails_is_refused_and_a_cloned_one_is_audited() {
    let org = offers_passkeys();
    let account = passkey_only();
    let c = passkey_ctx(&org, &account);
    let waiting = Step::AwaitingPasskey { proven: proven() };
    let refused = View::Refused {
        message: Message::PasskeyFailed,
        trust: false,
    };
    let cloned = transition(&waiting, Event::PasskeyWrong { cloned: true }, &c);
    assert_eq!(cloned.step, waiting);
    assert_eq!(
        cloned.effects,
        [
            counted(Method::Factor(PASSKEY), false),
            Effect::Audit(Audit::Failed(Method::Factor(PASSKEY))),
            Effect::Audit(Audit::PasskeyCloned),
        ]
    );
    assert_eq!(cloned.view, Some(refused));
    let wrong = transition(&waiting, Event::PasskeyWrong { cloned: false }, &c);
    assert_eq!(wrong.step, waiting);
    assert_eq!(
        wrong.effects,
        [
            counted(Method::Factor(PASSKEY), false),
            Effect::Audit(Audit::Failed(Method::Factor(PASSKEY))),
        ]
    );
    assert_eq!(wrong.view, Some(refused));
}

/// A passkey that could not be made (cancelled, or a stale page) guessed nothing: the page again
/// with a word, nothing counted or audited.
#[test]
fn a_passkey_that_could_not_be_made_is_asked_for_again_without_counting_a_failure() {
    let org = offers_passkeys();
    let account = hanna();
    let making = Step::EnrollingPasskey {
        proven: proven(),
        chosen: true,
    };
    let next = transition(
        &making,
        Event::PasskeyWrong { cloned: false },
        &ctx(&org, &account),
    );
    assert_eq!(next.step, making);
    assert!(next.effects.is_empty(), "{:?}", next.effects);
    assert_eq!(
        next.view,
        Some(View::Page {
            message: Some(Message::PasskeyFailed),
            trust: false
        })
    );
}

/// An organisation that stops offering passkeys: a passkey-only account proves its passkey once
/// (nothing is sent), and then chooses a method the organisation offers.
#[test]
fn a_passkey_the_organisation_no_longer_offers_is_proven_once_before_another_is_chosen() {
    let org = all_methods();
    let account = passkey_only();
    let c = passkey_ctx(&org, &account);
    let next = transition(&Step::Started, Event::PasswordOk, &c);
    let reproving = Step::Reproving {
        proven: Proven {
            at: NOW,
            ..proven()
        },
        factor: PASSKEY,
        sent: Sent::No,
    };
    assert_eq!(next.step, reproving);
    assert_eq!(
        next.effects,
        [counted(Method::Password, true), Effect::RotateSession],
        "nothing is sent"
    );
    assert_eq!(reproving.awaiting(), Some(Awaiting::Passkey));
    assert!(alternatives(&reproving, &c).is_empty());
    // Choosing before the passkey is proven changes nothing.
    let choose = transition(&reproving, Event::Chose("email"), &c);
    assert_eq!(choose.step, reproving);
    assert!(choose.effects.is_empty());
    // A passkey that fails is refused as at any other step.
    let wrong = transition(&reproving, Event::PasskeyWrong { cloned: false }, &c);
    assert_eq!(wrong.step, reproving);
    assert_eq!(
        wrong.view,
        Some(View::Refused {
            message: Message::PasskeyFailed,
            trust: false
        })
    );

    let right = transition(&reproving, Event::CodeRight { trust: false }, &c);
    assert_eq!(
        right.step,
        Step::Choosing {
            proven: Proven {
                at: NOW,
                reproved: true,
                ..proven()
            }
        }
    );
    assert!(right.effects.is_empty(), "no credential for the old factor");
    assert_eq!(right.view, Some(View::ToMfa));
}

/// Where the organisation allows it, a passkey alone signs in from the sign-in page: it is the
/// password and the second factor in one.
#[test]
fn a_passkey_alone_signs_in_where_the_organisation_is_passwordless() {
    let org = passwordless_org();
    let account = passkey_only();
    let next = transition(
        &Step::Started,
        Event::PasskeySignIn,
        &passkey_ctx(&org, &account),
    );
    assert_eq!(next.step, Step::SignedIn(signed_in(MfaStatus::Yes)));
    assert_eq!(
        next.effects,
        [
            counted(Method::Factor(PASSKEY), true),
            issued(Method::Factor(PASSKEY), MfaStatus::Yes, false),
        ]
    );
    assert_eq!(next.view, Some(View::Done(Finish::Return)));
}

/// Not at an organisation that is not passwordless (or does not list passkeys), not without a
/// passkey, not for a disabled account, never for a group tablet (its screen lock is the team's,
/// so its passkey is a second factor only): the sign-in page again, nothing done.
#[test]
fn a_passkey_alone_is_refused_unless_the_organisation_and_the_account_allow_it() {
    let open = passwordless_org();
    let not_passwordless = offers_passkeys();
    let mut unlisted = all_methods();
    unlisted.mfa.passwordless = true;
    let account = passkey_only();
    let disabled = Account {
        disabled: true,
        ..passkey_only()
    };
    let tablet = tablet();
    for (why, org, account, passkeys) in [
        ("not passwordless", &not_passwordless, &account, 1),
        ("passkeys not listed", &unlisted, &account, 1),
        ("no passkey", &open, &account, 0),
        ("disabled", &open, &disabled, 1),
        ("group tablet", &open, &tablet, 1),
    ] {
        let c = Ctx {
            passkeys,
            ..ctx(org, account)
        };
        assert!(!passwordless(&c), "{why}");
        let next = transition(&Step::Started, Event::PasskeySignIn, &c);
        assert_eq!(next.step, Step::Started, "{why}");
        assert!(next.effects.is_empty(), "{why}");
        assert_eq!(next.view, Some(View::ToLogin), "{why}");
    }
    // Not even where the organisation allows group passkeys as a second factor.
    let mut groups = passwordless_org();
    groups.mfa.group_passkeys = true;
    let next = transition(
        &Step::Started,
        Event::PasskeySignIn,
        &passkey_ctx(&groups, &tablet),
    );
    assert_eq!(next.step, Step::Started);
    assert_eq!(next.view, Some(View::ToLogin));
}

/// A group tablet's account uses its authenticator; a passkey on the tablet only where the
/// organisation allows group passkeys.
#[test]
fn a_group_account_uses_a_passkey_only_with_group_passkeys() {
    let tablet = tablet();
    let org = offers_passkeys();
    assert_eq!(allowed_methods(&org, &tablet), [APP]);
    let mut groups = offers_passkeys();
    groups.mfa.group_passkeys = true;
    assert_eq!(allowed_methods(&groups, &tablet), [APP, PASSKEY]);
    let mut unlisted = all_methods();
    unlisted.mfa.group_passkeys = true;
    assert_eq!(allowed_methods(&unlisted, &tablet), [APP]);

    // A tablet with a passkey, where group passkeys are not allowed: its app, and nothing else.
    let c = passkey_ctx(&org, &tablet);
    let app = Step::AwaitingApp {
        proven: proven(),
        instead: false,
    };
    assert_eq!(settle(&Step::Started, proven(), &c), app);
    assert!(alternatives(&app, &c).is_empty());
    // Where they are: the passkey first, the app another way, never a code.
    let c = passkey_ctx(&groups, &tablet);
    let waiting = Step::AwaitingPasskey { proven: proven() };
    assert_eq!(settle(&Step::Started, proven(), &c), waiting);
    assert_eq!(alternatives(&waiting, &c), [APP]);
}

/// After a recovery code, a passkey may replace the lost factor: the lost one (and the passkeys
/// that were on the phone with it) is not asked for, and the new passkey goes in place of every
/// factor before, with new recovery codes and an audit entry.
#[test]
fn after_a_recovery_code_a_new_passkey_replaces_the_lost_factor() {
    let org = offers_passkeys();
    let account = enrolled(APP);
    let c = passkey_ctx(&org, &account);
    let recovered = Step::SignedIn(SignedIn {
        recovered: true,
        ..signed_in(MfaStatus::Yes)
    });
    let replacing = Proven {
        at: NOW,
        replacing: true,
        ..proven()
    };
    let next = transition(&recovered, Event::ReplaceFactor, &c);
    let choosing = Step::Choosing {
        proven: replacing.clone(),
    };
    assert_eq!(next.step, choosing, "the existing passkey is not asked for");
    assert!(next.effects.is_empty());
    assert_eq!(settle(&choosing, replacing.clone(), &c), choosing);

    let chose = transition(&choosing, Event::Chose("passkey"), &c);
    assert_eq!(
        chose.step,
        Step::EnrollingPasskey {
            proven: replacing,
            chosen: true
        }
    );
    let made = transition(
        &chose.step,
        Event::PasskeyMade {
            passkey: "pk",
            trust: false,
        },
        &c,
    );
    assert_eq!(
        made.effects,
        [
            Effect::StorePasskey {
                passkey: "pk".into(),
                recovery_codes: true,
                replacing: true,
            },
            Effect::Audit(Audit::FactorReplaced(PASSKEY)),
            Effect::NotifyFactorAdded(PASSKEY),
            counted(Method::Factor(PASSKEY), true),
            issued(Method::Factor(PASSKEY), MfaStatus::Yes, false),
        ]
    );
    assert_eq!(made.step, Step::SignedIn(signed_in(MfaStatus::Yes)));
    assert_eq!(made.view, Some(View::Done(Finish::RecoveryCodes)));
}

/// A passkey ceremony's answer counts once, and only for the purpose and account it was made
/// for; a new sign-in drops it.
#[test]
fn a_passkey_ceremony_answers_once_for_its_own_purpose_and_account() {
    let ceremony = Ceremony {
        purpose: Purpose::Prove,
        account: Some("a1".into()),
        state: "state".into(),
        options: "options".into(),
    };
    let mut session = LoginSession::new("/".into());
    session.set_ceremony(ceremony.clone());
    assert_eq!(session.ceremony(), Some(&ceremony));
    assert_eq!(
        session.take_ceremony(Purpose::Prove, Some("a1")),
        Some("state".into())
    );
    assert_eq!(session.take_ceremony(Purpose::Prove, Some("a1")), None);
    for (purpose, account) in [
        (Purpose::Register, Some("a1")),
        (Purpose::Prove, Some("a2")),
        (Purpose::Discover, None),
    ] {
        session.set_ceremony(ceremony.clone());
        assert_eq!(session.take_ceremony(purpose, account), None, "{purpose:?}");
        assert_eq!(session.ceremony(), None, "dropped too: {purpose:?}");
    }
    session.set_ceremony(ceremony);
    session.begin("/".into());
    assert_eq!(session.ceremony(), None);
}

/// A sign-in stored before passkeys (no ceremony, no "another way" flag) still loads.
#[test]
fn a_session_stored_before_passkeys_still_loads() {
    let stored = r#"{"csrf":"x","return_to":"/","step":{"step":"awaiting_app","proven":{"org":"noord","account":"a1","at":1799999940}}}"#;
    let session: LoginSession = serde_json::from_str(stored).unwrap();
    assert_eq!(
        session.step(),
        &Step::AwaitingApp {
            proven: proven(),
            instead: false
        }
    );
    assert_eq!(session.ceremony(), None);
}
