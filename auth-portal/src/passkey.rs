//! Passkeys (WebAuthn, FIDO2) with the `webauthn-rs` library: the relying party of each host,
//! the ceremonies' options put on the pages, and the checks of the browser's answers. The
//! sign-in machine decides what a passkey proves; this makes and checks them.
//!
//! The relying party is the host the page was asked for (its name without the port); the
//! origin `https://` and that host. A passkey made on one organisation's host is offered by the
//! browser on that host only, and its assertion names its relying party, so an assertion made
//! for another host fails here. Passkeys are stored per organisation and looked up by their
//! credential id: one of organisation A never proves an account of organisation B, also where
//! both share a host.
//!
//! A ceremony's state waits in the sign-in session ([`Ceremony`]), made when its page is drawn
//! (its options go on the page: no script fetches anything, under the pages' CSP) and taken by
//! the answer: an answer sent twice finds none. Signature counters must go up: one that does
//! not (a copy of the key) is refused and audited, and of two answers racing, the database lets
//! one through ([`certgate_db::Database::use_passkey`]).

use std::sync::Arc;

use axum::extract::{Form, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use certgate_db::{Account, Database, StoredPasskey};
use certgate_policies::Organisation;
use serde::{Deserialize, Serialize};
use webauthn_rs::prelude::{
    CreationChallengeResponse, DiscoverableAuthentication, Passkey, PasskeyAuthentication,
    PasskeyRegistration, PublicKeyCredential, RegisterPublicKeyCredential, Url, Uuid, Webauthn,
    WebauthnBuilder, WebauthnError,
};

use crate::extract::{Back, InSession, PageError, Posted};
use crate::flow::{self, Signing, SigningIn};
use crate::pages::{self, PasskeyPage};
use crate::signin::{Awaiting, Ceremony, Event, LoginSession, Purpose, Step};
use crate::{PortalState, Visit};

/// The relying party for the request's host, named `name` (shown by some authenticators when a
/// passkey is made). `None` for a host WebAuthn cannot serve (an IP address, a malformed one).
pub(crate) fn relying_party(visit: &Visit, name: &str) -> Option<Webauthn> {
    let host = visit.host.trim().to_ascii_lowercase();
    if host.is_empty() || host.starts_with('[') {
        return None;
    }
    let rp_id = match host.rsplit_once(':') {
        Some((name, port)) if !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) => name,
        Some(_) => return None,
        None => host.as_str(),
    };
    // Not an IP address, and not a name with a trailing dot (another origin to the browser than
    // the name without).
    if rp_id.parse::<std::net::IpAddr>().is_ok() || rp_id.ends_with('.') {
        return None;
    }
    let origin = Url::parse(&format!("https://{host}")).ok()?;
    WebauthnBuilder::new(rp_id, &origin)
        .ok()?
        .rp_name(name)
        .build()
        .ok()
}

/// A passkey named for the device it was made on, as the person recognises it ("Chrome on
/// Android"), from the fixed list the User-Agent is matched against.
pub(crate) fn device_name(visit: &Visit) -> String {
    let (browser, system) = visit.agent;
    match (browser, system) {
        ("", "") => "Passkey".to_owned(),
        (what, "") | ("", what) => what.to_owned(),
        (browser, system) => crate::i18n::fill(visit.texts.device_on, "", browser, system),
    }
}

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// A passkey the browser just made and the library checked, on its way to the database
/// (through the machine, as [`Event::PasskeyMade`]): the key, and the account's user handle it
/// was made with.
#[derive(Serialize, Deserialize)]
struct MadePasskey {
    handle: String,
    passkey: Passkey,
}

/// The state of a registration: the library's, and the user handle the options named.
#[derive(Serialize, Deserialize)]
struct Registration {
    handle: String,
    state: PasskeyRegistration,
}

/// The row of a passkey just made (`made`, as [`finish_register`] gave it), named `name`.
pub(crate) fn stored(
    org: &Organisation,
    account: &Account,
    made: &str,
    name: &str,
    now: i64,
) -> Option<StoredPasskey> {
    let made: MadePasskey = serde_json::from_str(made).ok()?;
    let passkey = serde_json::to_string(&made.passkey).ok()?;
    Some(StoredPasskey {
        org: org.id.clone(),
        id: hex::encode(rand::random::<[u8; 8]>()),
        account_id: account.id.clone(),
        credential_id: b64(made.passkey.cred_id()),
        user_handle: made.handle,
        name: certgate_db::passkey_name(name),
        sign_count: counter_of(&passkey),
        passkey,
        created_at: now,
        last_used: None,
    })
}

/// The signature counter a stored passkey holds (the library keeps it inside the key's JSON).
fn counter_of(passkey: &str) -> i64 {
    serde_json::from_str::<serde_json::Value>(passkey)
        .ok()
        .and_then(|v| {
            v.pointer("/cred/counter")
                .and_then(serde_json::Value::as_i64)
        })
        .unwrap_or(0)
}

/// The account's user handle: the one its passkeys were made with, else a new random one.
fn handle_of(passkeys: &[StoredPasskey]) -> String {
    passkeys
        .first()
        .map(|p| p.user_handle.clone())
        .unwrap_or_else(|| b64(Uuid::new_v4().as_bytes()))
}

fn keys_of(passkeys: &[StoredPasskey]) -> Vec<Passkey> {
    passkeys
        .iter()
        .filter_map(|p| serde_json::from_str(&p.passkey).ok())
        .collect()
}

/// A new passkey's ceremony for `account` (its passkeys so far are excluded: one authenticator
/// holds one of the account's). The passkey is made discoverable where the authenticator can,
/// so it can sign in without a user name where that is allowed.
fn register(rp: &Webauthn, account: &Account, passkeys: &[StoredPasskey]) -> Option<Ceremony> {
    let handle = handle_of(passkeys);
    let user = URL_SAFE_NO_PAD
        .decode(&handle)
        .ok()
        .and_then(|bytes| Uuid::from_slice(&bytes).ok())
        .unwrap_or_else(Uuid::new_v4);
    let exclude = keys_of(passkeys)
        .iter()
        .map(|k| k.cred_id().clone())
        .collect::<Vec<_>>();
    let (options, state) = rp
        .start_passkey_registration(
            user,
            &account.username,
            &account.display_name,
            Some(exclude).filter(|e| !e.is_empty()),
        )
        .ok()?;
    let options = discoverable(options)?;
    let state = serde_json::to_string(&Registration {
        handle: b64(user.as_bytes()),
        state,
    })
    .ok()?;
    Some(Ceremony {
        purpose: Purpose::Register,
        account: Some(account.id.clone()),
        state,
        options,
    })
}

/// The creation options as JSON, asking for a discoverable credential ("preferred": an
/// authenticator that cannot still makes a passkey, one that needs the user name).
fn discoverable(options: CreationChallengeResponse) -> Option<String> {
    let mut json = serde_json::to_value(options).ok()?;
    if let Some(selection) = json.pointer_mut("/publicKey/authenticatorSelection") {
        selection["residentKey"] = "preferred".into();
    }
    serde_json::to_string(&json).ok()
}

/// The ceremony proving one of the account's passkeys.
fn prove(rp: &Webauthn, account: &Account, passkeys: &[StoredPasskey]) -> Option<Ceremony> {
    let keys = keys_of(passkeys);
    let (options, state) = rp.start_passkey_authentication(&keys).ok()?;
    Some(Ceremony {
        purpose: Purpose::Prove,
        account: Some(account.id.clone()),
        state: serde_json::to_string(&state).ok()?,
        options: serde_json::to_string(&options).ok()?,
    })
}

/// The ceremony of a sign-in by passkey alone: the browser offers the passkeys it holds for
/// this host.
fn discover(rp: &Webauthn) -> Option<Ceremony> {
    let (options, state) = rp.start_discoverable_authentication().ok()?;
    Some(Ceremony {
        purpose: Purpose::Discover,
        account: None,
        state: serde_json::to_string(&state).ok()?,
        options: serde_json::to_string(&options).ok()?,
    })
}

/// The new passkey from the browser's answer to a registration, ready for [`stored`].
fn finish_register(rp: &Webauthn, state: &str, answer: &str) -> Option<String> {
    let registration: Registration = serde_json::from_str(state).ok()?;
    let answer: RegisterPublicKeyCredential = serde_json::from_str(answer).ok()?;
    let passkey = rp
        .finish_passkey_registration(&answer, &registration.state)
        .map_err(|error| tracing::info!(%error, "a passkey registration was refused"))
        .ok()?;
    serde_json::to_string(&MadePasskey {
        handle: registration.handle,
        passkey,
    })
    .ok()
}

/// How an assertion went.
enum Proved {
    /// Right: the passkey used, recorded.
    Right,
    /// Wrong, or answered before.
    Wrong,
    /// The signature counter did not go up: a copy of the key.
    Cloned,
}

/// Checks an assertion of `passkey` against the ceremony's result and records the use (the
/// counter only goes up, once).
async fn record(
    db: &Database,
    passkey: &StoredPasskey,
    checked: Result<webauthn_rs::prelude::AuthenticationResult, WebauthnError>,
    now: i64,
) -> Result<Proved, certgate_db::DbError> {
    let result = match checked {
        Ok(result) => result,
        Err(WebauthnError::CredentialPossibleCompromise) => return Ok(Proved::Cloned),
        Err(error) => {
            tracing::info!(%error, "a passkey assertion was refused");
            return Ok(Proved::Wrong);
        }
    };
    let Ok(mut key) = serde_json::from_str::<Passkey>(&passkey.passkey) else {
        return Ok(Proved::Wrong);
    };
    key.update_credential(&result);
    let data = serde_json::to_string(&key).unwrap_or_else(|_| passkey.passkey.clone());
    let counter = i64::from(result.counter());
    // Refused when another answer got there first (the same one twice, say) or the passkey
    // was removed meanwhile; a copy of the key the library has told apart above.
    if db.use_passkey(passkey, counter, &data, now).await? {
        Ok(Proved::Right)
    } else {
        Ok(Proved::Wrong)
    }
}

/// The passkey of `passkeys` that made the assertion `answer`, and how it went.
async fn finish_prove(
    rp: &Webauthn,
    db: &Database,
    state: &str,
    answer: &PublicKeyCredential,
    passkeys: &[StoredPasskey],
    now: i64,
) -> Result<Proved, certgate_db::DbError> {
    let Ok(state) = serde_json::from_str::<PasskeyAuthentication>(state) else {
        return Ok(Proved::Wrong);
    };
    let id = b64(&answer.raw_id);
    let Some(passkey) = passkeys.iter().find(|p| p.credential_id == id) else {
        return Ok(Proved::Wrong);
    };
    let checked = rp.finish_passkey_authentication(answer, &state);
    record(db, passkey, checked, now).await
}

/// Puts the ceremony the step needs in the session, unless one for it waits there already: a
/// step waiting for a passkey gets its options when its page is drawn.
pub(crate) fn ready(visit: &Visit, s: &mut Signing) {
    let purpose = match s.step().awaiting() {
        Some(Awaiting::NewPasskey) => Purpose::Register,
        Some(Awaiting::Passkey) => Purpose::Prove,
        _ => return,
    };
    let waiting = s
        .attempt
        .session
        .ceremony()
        .is_some_and(|c| c.purpose == purpose && c.account.as_deref() == Some(&s.account.id));
    if waiting {
        return;
    }
    let Some(rp) = relying_party(visit, &s.org.name) else {
        return;
    };
    let ceremony = match purpose {
        Purpose::Register => register(&rp, &s.account, &s.passkeys),
        _ => prove(&rp, &s.account, &s.passkeys),
    };
    if let Some(ceremony) = ceremony {
        s.attempt.session.set_ceremony(ceremony);
    }
}

/// The page of a step waiting for a passkey: making the first one, or using one.
pub(crate) fn step_page(
    visit: &Visit,
    state: &PortalState,
    s: &Signing,
    notes: flow::Notes,
) -> Response {
    let c = visit.chrome(Some(&s.org));
    let t = c.t;
    let making = matches!(s.step(), Step::EnrollingPasskey { .. });
    let purpose = if making {
        Purpose::Register
    } else {
        Purpose::Prove
    };
    // Only this step's own ceremony (none where this host cannot have passkeys).
    let options = s
        .attempt
        .session
        .ceremony()
        .filter(|c| c.purpose == purpose && c.account.as_deref() == Some(&s.account.id))
        .map_or_else(String::new, |c| c.options.clone());
    pages::html(
        StatusCode::OK,
        &PasskeyPage {
            c: &c,
            csrf: s.attempt.session.csrf(),
            heading: if making {
                t.passkey_enrol_heading
            } else {
                t.passkey_prove_heading
            },
            lead: if making {
                crate::i18n::fill(t.passkey_enrol_intro, &s.org.name, "", "")
            } else {
                t.passkey_prove_intro.to_owned()
            },
            ceremony: if making { "register" } else { "prove" },
            options,
            button: if making {
                t.passkey_make
            } else {
                t.passkey_use
            },
            trust_label: flow::trust_label(visit, &s.org, &s.account),
            trust_checked: notes.trust,
            show_recovery_link: !s.account.recovery_codes.is_empty(),
            alternatives: flow::other_ways(visit, state, s),
            back_label: t.back,
            error: notes.error,
        },
    )
}

#[derive(Deserialize)]
pub(crate) struct AnswerForm {
    #[serde(default)]
    csrf: String,
    /// The browser's answer, as the page's script put it: JSON.
    #[serde(default)]
    credential: String,
    #[serde(default)]
    trust: Option<String>,
}

/// The longest answer read, in bytes (an attestation with a certificate chain is a few KB).
const ANSWER_MAX: usize = 64 * 1024;

/// `POST /.certgate/mfa/passkey`: the browser's answer to the step's ceremony, a new passkey or
/// the use of one.
pub(crate) async fn mfa_submit(
    State(state): State<Arc<PortalState>>,
    headers: HeaderMap,
    signing: SigningIn,
    Form(form): Form<AnswerForm>,
) -> Result<Response, PageError> {
    let mut signing = signing.posted(&form.csrf)?;
    let trust = form.trust.is_some();
    let Some(awaiting) = signing.it.step().awaiting() else {
        return Ok(Redirect::to("/.certgate/mfa").into_response());
    };
    let (purpose, account) = match awaiting {
        Awaiting::NewPasskey => (Purpose::Register, signing.it.account.id.clone()),
        Awaiting::Passkey => (Purpose::Prove, signing.it.account.id.clone()),
        _ => return Ok(Redirect::to("/.certgate/mfa").into_response()),
    };
    // Using a passkey counts against the guess limits as a code does; making one guesses
    // nothing.
    let counted = match purpose {
        Purpose::Prove => {
            let (visit, store, s) = (&signing.visit, &signing.store, &signing.it);
            match flow::begin_guess(&state, visit, store, s, &headers).await? {
                Ok(counted) => Some(counted),
                Err(blocked) => {
                    let screen = flow::Screen::Step;
                    return Ok(flow::wait_page(&state, visit, s, screen, trust, blocked));
                }
            }
        }
        _ => None,
    };
    // Taken whatever the answer: it counts once.
    let ceremony = signing
        .it
        .attempt
        .session
        .take_ceremony(purpose, Some(&account));
    flow::save(&signing.store, &signing.it.attempt).await;
    let rp = relying_party(&signing.visit, &signing.it.org.name);
    let answer = (form.credential.len() <= ANSWER_MAX).then_some(form.credential.as_str());
    let (ceremony, rp, answer) = match (ceremony, rp, answer) {
        (Some(ceremony), Some(rp), Some(answer)) => (ceremony, rp, answer),
        _ => {
            let event = Event::PasskeyWrong { cloned: false };
            return signing.tell(&state, event, flow::Screen::Step).await;
        }
    };
    let made;
    let event = match purpose {
        Purpose::Register => match finish_register(&rp, &ceremony, answer) {
            Some(passkey) => {
                made = passkey;
                Event::PasskeyMade {
                    passkey: &made,
                    trust,
                }
            }
            None => Event::PasskeyWrong { cloned: false },
        },
        _ => {
            let proved = match serde_json::from_str::<PublicKeyCredential>(answer) {
                Ok(answer) => {
                    let now = state.now();
                    finish_prove(
                        &rp,
                        &signing.db,
                        &ceremony,
                        &answer,
                        &signing.it.passkeys,
                        now,
                    )
                    .await
                    .map_err(|error| {
                        tracing::error!(%error, "cannot record a passkey's use");
                        PageError::unavailable(&signing.visit)
                    })?
                }
                Err(_) => Proved::Wrong,
            };
            match proved {
                Proved::Right => Event::CodeRight { trust },
                Proved::Wrong => Event::PasskeyWrong { cloned: false },
                Proved::Cloned => Event::PasskeyWrong { cloned: true },
            }
        }
    };
    if let (Event::CodeRight { .. }, Some(counted)) = (&event, counted) {
        flow::guess_was_right(&state, &signing.store, counted).await;
    }
    signing.tell(&state, event, flow::Screen::Step).await
}

/// The account page's ceremony for a new passkey, unless one waits in the session already.
pub(crate) fn ready_to_register(
    visit: &Visit,
    org: &Organisation,
    account: &Account,
    passkeys: &[StoredPasskey],
    session: &mut LoginSession,
) {
    if register_options(session, account).is_some() {
        return;
    }
    if let Some(ceremony) =
        relying_party(visit, &org.name).and_then(|rp| register(&rp, account, passkeys))
    {
        session.set_ceremony(ceremony);
    }
}

/// The options of the new passkey ceremony for `account` waiting in the session.
pub(crate) fn register_options(session: &LoginSession, account: &Account) -> Option<String> {
    session
        .ceremony()
        .filter(|c| c.purpose == Purpose::Register && c.account.as_deref() == Some(&account.id))
        .map(|c| c.options.clone())
}

/// The new passkey from the browser's answer to the account page's ceremony (taken from the
/// session whatever the answer), ready for [`stored`].
pub(crate) fn finish_account_register(
    visit: &Visit,
    org: &Organisation,
    account: &Account,
    session: &mut LoginSession,
    answer: &str,
) -> Option<String> {
    let state = session.take_ceremony(Purpose::Register, Some(&account.id))?;
    let rp = relying_party(visit, &org.name)?;
    (answer.len() <= ANSWER_MAX)
        .then(|| finish_register(&rp, &state, answer))
        .flatten()
}

/// The sign-in page's passkey ceremony, when an organisation of this host lets a passkey alone
/// sign in: put in the session, for the page to carry.
pub(crate) fn ready_to_discover(visit: &Visit, session: &mut LoginSession) {
    if !visit.orgs.iter().any(|o| o.mfa.passwordless) {
        return;
    }
    let name = match visit.single_org() {
        Some(org) => org.name.clone(),
        None => visit.host.clone(),
    };
    if let Some(ceremony) = relying_party(visit, &name).and_then(|rp| discover(&rp)) {
        session.set_ceremony(ceremony);
    }
}

/// The options of the sign-in page's passkey ceremony, if one waits.
pub(crate) fn discover_options(session: &LoginSession) -> Option<&str> {
    session
        .ceremony()
        .filter(|c| c.purpose == Purpose::Discover)
        .map(|c| c.options.as_str())
}

#[derive(Deserialize)]
pub(crate) struct SignInForm {
    #[serde(default)]
    credential: String,
}

/// A sign-in form without its session goes back to the sign-in page.
pub(crate) struct ToSignIn;

impl Back for ToSignIn {
    const TO: &'static str = "/.certgate/login";
}

/// `POST /.certgate/passkey`: a sign-in by passkey alone. The passkey names its account; it
/// must be of an organisation of this host that allows it, and the account may not be
/// disabled. Every refusal is the same words after the same delay, audited.
pub(crate) async fn sign_in_submit(
    State(state): State<Arc<PortalState>>,
    Posted {
        visit,
        store,
        db,
        it: InSession { mut attempt, .. },
        form,
    }: Posted<InSession<ToSignIn>, SignInForm>,
) -> Result<Response, PageError> {
    let ceremony = attempt.session.take_ceremony(Purpose::Discover, None);
    // The answer counts once, whatever it is.
    flow::save(&store, &attempt).await;
    let found = match ceremony {
        Some(ceremony) if form.credential.len() <= ANSWER_MAX => {
            identify(&state, &visit, &db, &ceremony, &form.credential).await?
        }
        _ => Found::Nobody,
    };
    let (org, account, passkeys) = match found {
        Found::Account {
            org,
            account,
            passkeys,
        } => (org, account, passkeys),
        refused => {
            let (org, name, cloned) = match &refused {
                Found::Refused { org, name, cloned } => (Some(org.clone()), name.as_str(), *cloned),
                _ => (
                    visit.single_org().map(|o| o.id.clone()),
                    flow::UNKNOWN_NAME,
                    false,
                ),
            };
            if let Some(org) = &org {
                state
                    .metrics
                    .logins
                    .with_label_values(&[org.as_str(), "passkey", "failure"])
                    .inc();
                flow::audit_failed_sign_in(&state, &db, org, name, &visit.ip, "passkey").await;
                if cloned {
                    let cloned = certgate_db::AuditAction::PasskeyCloned;
                    flow::audit_as(&state, &db, org, name, &visit.ip, cloned, "").await;
                }
            }
            flow::pace(&state, visit.arrived).await;
            ready_to_discover(&visit, &mut attempt.session);
            flow::save(&store, &attempt).await;
            let error = visit.texts.passkey_sign_in_refused.to_owned();
            return Ok(flow::login_refused(
                &visit,
                &attempt,
                error,
                StatusCode::UNAUTHORIZED,
            ));
        }
    };
    attempt
        .session
        .begin(attempt.session.return_to().to_owned());
    let mut s = Signing::new(attempt, org, *account);
    s.passkeys = passkeys;
    Ok(flow::first_step_done(&state, &visit, &store, &db, s, Event::PasskeySignIn).await)
}

/// Whom a sign-in passkey names.
enum Found {
    Account {
        org: Arc<Organisation>,
        account: Box<Account>,
        passkeys: Vec<StoredPasskey>,
    },
    /// A passkey of an account of `org` (`name`), refused.
    Refused {
        org: String,
        name: String,
        cloned: bool,
    },
    Nobody,
}

/// The account whose passkey answered the sign-in page's ceremony, if it proves it.
async fn identify(
    state: &PortalState,
    visit: &Visit,
    db: &Database,
    ceremony: &str,
    answer: &str,
) -> Result<Found, PageError> {
    let unavailable = |error: certgate_db::DbError| {
        tracing::error!(%error, "cannot check a sign-in passkey");
        PageError::unavailable(visit)
    };
    let (Ok(state_of), Ok(answer)) = (
        serde_json::from_str::<DiscoverableAuthentication>(ceremony),
        serde_json::from_str::<PublicKeyCredential>(answer),
    ) else {
        return Ok(Found::Nobody);
    };
    let Some(rp) = relying_party(visit, &visit.host) else {
        return Ok(Found::Nobody);
    };
    let Ok((handle, id)) = rp.identify_discoverable_authentication(&answer) else {
        return Ok(Found::Nobody);
    };
    let Some(passkey) = db
        .passkey_by_credential(&b64(id))
        .await
        .map_err(unavailable)?
    else {
        return Ok(Found::Nobody);
    };
    // Of an organisation this host serves (a passkey of another never signs in here).
    let Some(org) = visit.org(&passkey.org).cloned() else {
        return Ok(Found::Nobody);
    };
    let Some(account) = db
        .account(&org.id, &passkey.account_id)
        .await
        .map_err(unavailable)?
    else {
        return Ok(Found::Nobody);
    };
    let passkeys = db
        .passkeys(&org.id, &account.id)
        .await
        .map_err(unavailable)?;
    let refused = |cloned| Found::Refused {
        org: org.id.clone(),
        name: account.username.clone(),
        cloned,
    };
    let ctx = crate::signin::Ctx {
        org: &org,
        account: &account,
        senders: crate::signin::Senders {
            sms: false,
            email: false,
        },
        passkeys: passkeys.len(),
        now: state.now(),
    };
    let Ok(key) = serde_json::from_str::<Passkey>(&passkey.passkey) else {
        return Ok(Found::Nobody);
    };
    if b64(handle.as_bytes()) != passkey.user_handle {
        return Ok(Found::Nobody);
    }
    // The signature first: a credential id is no secret (a page that asks for a passkey lists
    // it), so only an answer the passkey made names its account in the audit log.
    let checked = rp.finish_discoverable_authentication_v2(&answer, state_of, &key);
    if let Err(error) = &checked {
        if !matches!(error, WebauthnError::CredentialPossibleCompromise) {
            tracing::info!(%error, "a sign-in passkey's answer was refused");
            return Ok(Found::Nobody);
        }
    }
    if !crate::signin::passwordless(&ctx) {
        return Ok(refused(false));
    }
    match record(db, &passkey, checked, state.now())
        .await
        .map_err(unavailable)?
    {
        Proved::Right => Ok(Found::Account {
            org,
            account: Box::new(account),
            passkeys,
        }),
        Proved::Wrong => Ok(refused(false)),
        Proved::Cloned => Ok(refused(true)),
    }
}
