//! The sign-in as a state machine, with no web framework in it: what a sign-in session
//! remembers ([`LoginSession`]), the steps it can be in ([`Step`]), what can happen
//! ([`Event`]), and one pure function, [`transition`], that takes the step, the event, the
//! account, the organisation's policy and the time, and answers with the next step, the
//! effects to carry out ([`Effect`]: send a code, store a factor, write an audit entry, count a
//! metric, issue the credential) and what to show ([`View`]), or refuses an event that does not
//! apply to the step ([`Next::refused`]). `flow.rs` loads, calls, carries out and renders; it
//! never decides.
//!
//! What happens after the password is right ([`Event::PasswordOk`]):
//!
//! 1. the account needs no second factor here (a role in `exempt_roles`, or `required =
//!    "enrolled"` and none enrolled): the credential is issued at once, `X-Certgate-Mfa:
//!    exempt` or `none`;
//! 2. otherwise the session gets a new id and the second factor is settled ([`settle`]): the
//!    factor the account enrolled, when the organisation still offers it (an authenticator
//!    code, or a code sent by SMS or e-mail from this very request); a factor it no longer
//!    offers, proven once before another may be chosen; the authenticator to enrol, when that
//!    is all the organisation offers; else the choice between the methods offered.
//! 3. a right code issues the credential (a first code by a channel stores that channel, a first
//!    authenticator code the authenticator); a wrong one is counted, audited and refused; a
//!    recovery code may stand in for any factor. A first factor of any kind (a first passkey
//!    too) ends on ten recovery codes and "set-up complete", unless the account has codes
//!    already (an authenticator always gets new ones).
//!
//! Passkeys are the account's own factor when it has one and the organisation offers them (the
//! app or a channel is then "another way"); a first passkey made at sign-in is stored like a
//! first authenticator ([`Effect::StorePasskey`]). The handler runs the WebAuthn ceremony and
//! tells the machine how it went, as it checks a code. Where the organisation allows it
//! (`[mfa] passwordless`), a passkey is the whole sign-in ([`Event::PasskeySignIn`]).
//!
//! Every step past the password names the account and when it was proven ([`Proven`]): an
//! account disabled or reset since (new password, MFA reset) voids the sign-in, whatever the
//! event. The policy and the account are read again for every request, so the step is settled
//! again each time: a factor the organisation stopped offering half way through is not asked for.

use certgate_certs::MfaStatus;
use certgate_db::{Account, AccountKind, MfaChoice};
use certgate_policies::{MfaMethod, MfaRequirement, Organisation};
use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;

#[cfg(test)]
mod tests;

/// A completed sign-in counts as fresh (to approve a device, change one's second factor, see
/// the certificate download) for this long, in seconds.
pub const FRESH_SIGN_IN: i64 = 10 * 60;

/// What the portal remembers between the pages of one sign-in. Its fields change only through
/// the methods here and [`transition`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LoginSession {
    /// Every form carries it back; renewed when a sign-in completes.
    csrf: String,
    /// Where to go when done (already made safe).
    return_to: String,
    step: Step,
    /// The device-flow request this browser is approving (hash of its device code); kept across
    /// the sign-in it needs.
    #[serde(default)]
    device_request: Option<String>,
    /// The passkey ceremony under way: its challenge, for one answer.
    #[serde(default)]
    ceremony: Option<Ceremony>,
}

/// A WebAuthn ceremony's challenge and state, kept between the options the page asked for and
/// the browser's answer; taken once, so an answer cannot be replayed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ceremony {
    pub purpose: Purpose,
    /// The account it is for (none when a passkey is to find the account).
    pub account: Option<String>,
    /// The WebAuthn library's state, as JSON.
    pub state: String,
    /// What the page hands the browser for it (the challenge, the relying party), as JSON.
    pub options: String,
}

/// What a passkey ceremony is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Purpose {
    /// Making a new passkey (at sign-in, or on the account page).
    Register,
    /// Proving the account's passkey, as its second factor.
    Prove,
    /// Signing in with a passkey alone: the passkey names the account.
    Discover,
}

/// Who the first step (a password, or an identity provider) vouched for, and when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Proven {
    pub org: String,
    /// The account's id.
    pub account: String,
    /// Unix seconds: an account reset since voids the sign-in.
    pub at: i64,
    /// The account's enrolled factor, one the organisation no longer offers, was proven on this
    /// sign-in: now it may choose one the organisation offers.
    #[serde(default)]
    pub reproved: bool,
    /// Signed in with a recovery code, the person sets up a new factor in place of the one
    /// they lost: the stored one is not asked for, and the first right code replaces it.
    #[serde(default)]
    pub replacing: bool,
}

/// Whether this sign-in's code went out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Sent {
    No,
    Yes,
    /// It could not be sent; nothing can match.
    Not(SendProblem),
}

/// Why a code could not be sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SendProblem {
    /// Too many codes for this account: try again at `until` (unix seconds).
    Limited { until: i64 },
    /// The sender failed (or the account has no number or address).
    Failed,
}

/// Where a sign-in is.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(tag = "step", rename_all = "snake_case")]
pub enum Step {
    /// Nobody is proven yet.
    #[default]
    Started,
    /// The enrolled factor, one the organisation no longer offers, is asked for once before
    /// another may be chosen: a password alone never puts a new factor in its place.
    Reproving {
        proven: Proven,
        factor: MfaChoice,
        sent: Sent,
    },
    /// Choosing among the methods offered.
    Choosing { proven: Proven },
    /// Setting up an authenticator app: its secret, sealed for the account, waits for a first
    /// code. `chosen`: picked on this visit (back goes to the choice).
    Enrolling {
        proven: Proven,
        chosen: bool,
        secret: Option<String>,
    },
    /// Waiting for a code from the enrolled authenticator app. `instead`: picked as "another
    /// way" instead of the account's passkey.
    AwaitingApp {
        proven: Proven,
        #[serde(default)]
        instead: bool,
    },
    /// Making a first passkey in the browser. `chosen`: picked on this visit.
    EnrollingPasskey { proven: Proven, chosen: bool },
    /// Waiting for one of the account's passkeys: where the account has one, it is always its
    /// own factor (so never "another way").
    AwaitingPasskey { proven: Proven },
    /// Waiting for the code sent by SMS or e-mail. `chosen`: picked on this visit. `instead`:
    /// "sign in another way": the account's own factor is set aside for this sign-in only, and
    /// a right code stores nothing.
    AwaitingCode {
        proven: Proven,
        channel: MfaChoice,
        chosen: bool,
        sent: Sent,
        #[serde(default)]
        instead: bool,
    },
    /// Done: the credential was issued.
    SignedIn(SignedIn),
}

/// Who signed in, when, and how.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedIn {
    pub org: String,
    /// The account's id.
    pub account: String,
    /// Unix seconds.
    pub at: i64,
    pub mfa: MfaStatus,
    /// With a recovery code: the factor may be replaced at once ([`Event::ReplaceFactor`]).
    #[serde(default)]
    pub recovered: bool,
}

impl SignedIn {
    /// Within [`FRESH_SIGN_IN`] of `now`.
    pub fn fresh(&self, now: i64) -> bool {
        now - self.at <= FRESH_SIGN_IN
    }
}

impl LoginSession {
    pub fn new(return_to: String) -> Self {
        LoginSession {
            csrf: new_csrf(),
            return_to,
            step: Step::Started,
            device_request: None,
            ceremony: None,
        }
    }

    pub fn csrf(&self) -> &str {
        &self.csrf
    }

    /// Whether a form's token is this session's, compared in constant time.
    pub fn csrf_ok(&self, presented: &str) -> bool {
        !self.csrf.is_empty() && bool::from(self.csrf.as_bytes().ct_eq(presented.as_bytes()))
    }

    pub fn return_to(&self) -> &str {
        &self.return_to
    }

    pub fn step(&self) -> &Step {
        &self.step
    }

    /// The sign-in this session completed, if it is done.
    pub fn signed_in(&self) -> Option<&SignedIn> {
        match &self.step {
            Step::SignedIn(done) => Some(done),
            _ => None,
        }
    }

    /// Who the first step vouched for, while the second factor is under way.
    pub fn proven(&self) -> Option<&Proven> {
        self.step.proven()
    }

    pub fn device_request(&self) -> Option<&str> {
        self.device_request.as_deref()
    }

    /// The device-flow request this browser approves (or none, once decided).
    pub fn set_device_request(&mut self, key: Option<String>) {
        self.device_request = key;
    }

    /// A new sign-in from the start (the sign-in page, "back"), keeping the token and the
    /// device-flow request, going to `return_to` when done.
    pub fn begin(&mut self, return_to: String) {
        self.step = Step::Started;
        self.return_to = return_to;
        self.ceremony = None;
    }

    /// Keeps a passkey ceremony's state until the browser answers (one at a time).
    pub fn set_ceremony(&mut self, ceremony: Ceremony) {
        self.ceremony = Some(ceremony);
    }

    /// The ceremony waiting for the browser, to put on a page.
    pub fn ceremony(&self) -> Option<&Ceremony> {
        self.ceremony.as_ref()
    }

    /// The state of the ceremony for `purpose` and `account`, taken: it answers once. Any
    /// other ceremony under way is dropped too.
    pub fn take_ceremony(&mut self, purpose: Purpose, account: Option<&str>) -> Option<String> {
        self.ceremony
            .take()
            .filter(|c| c.purpose == purpose && c.account.as_deref() == account)
            .map(|c| c.state)
    }

    /// Where to go when the sign-in under way is done.
    pub fn set_return_to(&mut self, return_to: String) {
        self.return_to = return_to;
    }

    /// Moves to the step [`transition`] answered; a completed sign-in gets a new form token (one
    /// read from a page before it is worth nothing after).
    pub fn enter(&mut self, step: Step) {
        if matches!(step, Step::SignedIn(_)) && step != self.step {
            self.csrf = new_csrf();
        }
        self.step = step;
    }
}

fn new_csrf() -> String {
    hex::encode(rand::random::<[u8; 24]>())
}

impl Step {
    /// The account proven, in a step of the second factor.
    pub fn proven(&self) -> Option<&Proven> {
        match self {
            Step::Reproving { proven, .. }
            | Step::Choosing { proven }
            | Step::Enrolling { proven, .. }
            | Step::AwaitingApp { proven, .. }
            | Step::EnrollingPasskey { proven, .. }
            | Step::AwaitingPasskey { proven, .. }
            | Step::AwaitingCode { proven, .. } => Some(proven),
            Step::Started | Step::SignedIn(_) => None,
        }
    }

    /// The code this step waits for, for the handler to check before it tells the machine.
    pub fn awaiting(&self) -> Option<Awaiting<'_>> {
        match self {
            Step::AwaitingApp { .. } => Some(Awaiting::App),
            Step::AwaitingPasskey { .. }
            | Step::Reproving {
                factor: MfaChoice::Passkey,
                ..
            } => Some(Awaiting::Passkey),
            Step::EnrollingPasskey { .. } => Some(Awaiting::NewPasskey),
            Step::Enrolling {
                secret: Some(secret),
                ..
            } => Some(Awaiting::Enrolment { secret }),
            Step::Reproving {
                factor: MfaChoice::Authenticator,
                ..
            } => Some(Awaiting::App),
            Step::Reproving {
                factor: channel,
                sent: Sent::Yes,
                ..
            }
            | Step::AwaitingCode {
                channel,
                sent: Sent::Yes,
                ..
            } => Some(Awaiting::Code(*channel)),
            _ => None,
        }
    }

    /// The sign-in this step completed, while it is fresh at `now` ([`FRESH_SIGN_IN`]): what
    /// approving a device needs. A sign-in under way, or one completed longer ago, is none.
    pub fn fresh_sign_in(&self, now: i64) -> Option<&SignedIn> {
        match self {
            Step::SignedIn(done) if done.fresh(now) => Some(done),
            _ => None,
        }
    }

    /// The channel whose code this step waits for (sent or not).
    pub fn channel(&self) -> Option<MfaChoice> {
        match self {
            Step::AwaitingCode { channel, .. } => Some(*channel),
            Step::Reproving { factor, .. } if factor.is_channel() => Some(*factor),
            _ => None,
        }
    }

    /// The factor a code of this step proves, for the metric and the audit log.
    fn factor(&self) -> Option<MfaChoice> {
        match self {
            Step::Reproving { factor, .. } => Some(*factor),
            Step::Enrolling { .. } | Step::AwaitingApp { .. } => Some(MfaChoice::Authenticator),
            Step::EnrollingPasskey { .. } | Step::AwaitingPasskey { .. } => {
                Some(MfaChoice::Passkey)
            }
            Step::AwaitingCode { channel, .. } => Some(*channel),
            Step::Started | Step::Choosing { .. } | Step::SignedIn(_) => None,
        }
    }

    fn sent(&self) -> Sent {
        match self {
            Step::Reproving { sent, .. } | Step::AwaitingCode { sent, .. } => *sent,
            _ => Sent::No,
        }
    }

    fn with_sent(mut self, new: Sent) -> Step {
        if let Step::Reproving { sent, .. } | Step::AwaitingCode { sent, .. } = &mut self {
            *sent = new;
        }
        self
    }
}

/// What a step waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Awaiting<'a> {
    /// A code of the account's enrolled authenticator.
    App,
    /// A first code of the authenticator being enrolled, whose sealed secret this is.
    Enrolment { secret: &'a str },
    /// The code sent by this channel.
    Code(MfaChoice),
    /// One of the account's passkeys.
    Passkey,
    /// A new passkey, made in the browser.
    NewPasskey,
}

/// What a transition is decided on, read afresh for each request.
#[derive(Debug, Clone, Copy)]
pub struct Ctx<'a> {
    pub org: &'a Organisation,
    pub account: &'a Account,
    /// The channels this deployment has a sender for.
    pub senders: Senders,
    /// How many passkeys the account has.
    pub passkeys: usize,
    /// Unix seconds.
    pub now: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Senders {
    pub sms: bool,
    pub email: bool,
}

/// How an identity provider's sign-in treats the second factor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProviderMfa {
    /// certgate asks for its own, as after a password.
    Certgate,
    /// The provider's word is taken; `vouched`: it said a second factor was used (`amr`).
    Provider { vouched: bool },
}

/// What can happen to a sign-in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event<'a> {
    /// The password of `ctx.account` was right.
    PasswordOk,
    /// An identity provider vouched for `ctx.account`.
    ProviderVouched(ProviderMfa),
    /// A signed-in user turns a second factor on from the account page.
    AddFactor,
    /// Just signed in with a recovery code, the user sets up a new factor in place of the lost
    /// one.
    ReplaceFactor,
    /// The second-factor page is loaded.
    Show,
    /// A new authenticator secret was sealed ([`Effect::SealNewSecret`]).
    SecretSealed(String),
    /// A method was picked on the choice page (as the form sent it).
    Chose(&'a str),
    /// "Sign in another way": a code by this channel (as the form sent it) for this sign-in,
    /// instead of the account's own factor.
    Instead(&'a str),
    /// "Send a new code".
    Resend,
    /// [`Effect::SendCode`] went out.
    CodeSent {
        again: bool,
    },
    /// [`Effect::SendCode`] could not go out.
    CodeNotSent {
        again: bool,
        problem: SendProblem,
    },
    /// The code the step awaits was right; `trust`: "trust this device" was ticked.
    CodeRight {
        trust: bool,
    },
    /// It was wrong; `gone`: no code is waiting any more (expired, or too many tries).
    CodeWrong {
        trust: bool,
        gone: bool,
    },
    /// The browser made a new passkey and the ceremony checked out: the passkey as it is
    /// stored (the public key, JSON).
    PasskeyMade {
        passkey: &'a str,
        trust: bool,
    },
    /// A passkey did not prove the account (a wrong or replayed answer); `cloned`: its
    /// signature counter did not go up, so a copy of the key was used.
    PasskeyWrong {
        cloned: bool,
    },
    /// A passkey alone proved `ctx.account` (`[mfa] passwordless`), from the sign-in page.
    PasskeySignIn,
    /// A recovery code was right and used; `left` remain.
    RecoveryRight {
        left: usize,
    },
    RecoveryWrong,
    /// "Back".
    Back,
}

/// How the person proved who they are, for the credential, the audit log and the metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Proof {
    pub method: Method,
    pub mfa: MfaStatus,
    /// "Trust this device" was ticked (ignored for group accounts, and without a second factor).
    pub trust: bool,
}

/// A way of proving who one is, as the `method` label of `certgate_logins_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Password,
    Sso,
    Factor(MfaChoice),
    Recovery,
}

impl Method {
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Password => "password",
            Method::Sso => "sso",
            Method::Factor(factor) => factor.as_str(),
            Method::Recovery => "recovery",
        }
    }
}

/// The audit entries a sign-in writes (the credential's own, `sign-in`, comes with
/// [`Effect::Issue`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Audit {
    /// `sign-in-failed`, the method as detail.
    Failed(Method),
    /// `mfa-enrolled`, the factor as detail.
    FactorEnrolled(MfaChoice),
    /// `mfa-replaced`, the new factor as detail: set up after a recovery code, in place of the
    /// one lost.
    FactorReplaced(MfaChoice),
    /// `recovery-code-used`.
    RecoveryCodeUsed,
    /// `passkey-cloned`: a passkey's signature counter went back, so a copy of its key exists.
    PasskeyCloned,
}

/// What the handler carries out, in order; the first that fails ends the request with a page
/// and nothing of the transition is saved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    /// A new session id: one planted before the first step is worthless.
    RotateSession,
    /// Seal a new authenticator secret for the account; answered by [`Event::SecretSealed`].
    SealNewSecret,
    /// Send a code by `channel`; answered by [`Event::CodeSent`] or [`Event::CodeNotSent`].
    SendCode {
        channel: MfaChoice,
        again: bool,
    },
    /// Store the account's factor, removing the one before (an authenticator's comes with its
    /// sealed secret); with `recovery_codes`, ten new recovery codes, shown once; with
    /// `replacing`, in place of a lost factor (set up after a recovery code): a lost app's
    /// secret goes too.
    StoreFactor {
        factor: MfaChoice,
        secret: Option<String>,
        recovery_codes: bool,
        replacing: bool,
    },
    /// Store a new passkey (the public key, JSON) for the account, marking it enrolled; with
    /// `recovery_codes`, ten new ones, shown once; with `replacing`, in place of every factor
    /// before (set up after a recovery code).
    StorePasskey {
        passkey: String,
        recovery_codes: bool,
        replacing: bool,
    },
    /// Remove the account's passkeys.
    RemovePasskeys,
    Audit(Audit),
    /// Tell the account by e-mail that a second factor was added.
    NotifyFactorAdded(MfaChoice),
    /// `certgate_logins_total{org, method, result}`, `result` `success` or `failure`. A
    /// password's failure never reaches the machine: the handler counts it.
    CountLogin {
        method: Method,
        success: bool,
    },
    /// Issue the browser credential, record the device, audit `sign-in`, and give the session
    /// a new id.
    Issue(Proof),
}

/// What to show once the effects are carried out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum View {
    /// To the sign-in page: there is no sign-in, or it was made void.
    ToLogin,
    /// To the second-factor page (after a post).
    ToMfa,
    /// To the sign-in page, going to the session's destination afterwards ("back").
    Restart,
    /// The current step's page, with a message.
    Page {
        message: Option<Message>,
        trust: bool,
    },
    /// A guess refused: after the failure delay, 401 and the page again with the message.
    Refused { message: Message, trust: bool },
    /// Signed in: on to the destination, after a page when there is something to say.
    Done(Finish),
}

/// A message on a step's page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Message {
    WrongCode,
    /// No code is waiting (it expired, or was guessed at too often).
    NoCode,
    ChooseOne,
    /// The passkey did not work.
    PasskeyFailed,
    Resent,
    NotSent(SendProblem),
}

/// What a completed sign-in shows before going on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Finish {
    Return,
    /// The recovery codes a factor just set up came with, once, and that the set-up is complete.
    RecoveryCodes,
    /// How many recovery codes are left after one was used.
    RecoveryLeft(usize),
}

/// The answer of [`transition`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Next {
    pub step: Step,
    pub effects: Vec<Effect>,
    /// `None` only for the answer to an effect, which keeps what the event before showed.
    pub view: Option<View>,
    /// The event does not apply to the step ([`Next::refuse`]): the step stays and nothing is
    /// carried out. (A wrong guess is not refused here: it is counted and audited, and shown as
    /// [`View::Refused`].)
    pub refused: bool,
}

impl Next {
    fn to(step: Step, effects: Vec<Effect>, view: View) -> Next {
        Next::taken(step, effects, Some(view))
    }

    fn taken(step: Step, effects: Vec<Effect>, view: Option<View>) -> Next {
        Next {
            step,
            effects,
            view,
            refused: false,
        }
    }

    /// The step stays and its page is shown, with `message`: nothing else happens.
    fn show(step: &Step, message: Option<Message>) -> Next {
        Next::to(step.clone(), Vec::new(), page(message))
    }

    /// The event does not apply to `step`: it stays, nothing is carried out, and the visitor is
    /// sent to `view` (`None`: an effect's answer that no longer applies, ignored).
    fn refuse(step: &Step, view: Option<View>) -> Next {
        Next {
            step: step.clone(),
            effects: Vec::new(),
            view,
            refused: true,
        }
    }
}

/// Whether an account needs a second factor at this organisation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    /// A role in `exempt_roles`: password only, `X-Certgate-Mfa: exempt`.
    Exempt,
    /// `required = "enrolled"` and the user has not enrolled.
    NotRequired,
    Required,
}

pub fn mfa_need(org: &Organisation, account: &Account) -> Need {
    if account.kind == AccountKind::Group {
        return Need::Required;
    }
    if account
        .roles
        .iter()
        .any(|role| org.mfa.exempt_roles.iter().any(|e| e == role))
    {
        return Need::Exempt;
    }
    match org.mfa.required {
        MfaRequirement::All => Need::Required,
        MfaRequirement::Enrolled if account.mfa_enrolled => Need::Required,
        MfaRequirement::Enrolled => Need::NotRequired,
    }
}

/// The methods this account may use here: group accounts use one authenticator, and a passkey
/// on the tablet where the organisation allows it (`group_passkeys`).
pub fn allowed_methods(org: &Organisation, account: &Account) -> Vec<MfaChoice> {
    if account.kind == AccountKind::Group {
        let mut methods = vec![MfaChoice::Authenticator];
        if org.mfa.group_passkeys && org.mfa.offers_passkeys() {
            methods.push(MfaChoice::Passkey);
        }
        return methods;
    }
    org.mfa
        .methods
        .iter()
        .map(|m| match m {
            MfaMethod::Authenticator => MfaChoice::Authenticator,
            MfaMethod::Sms => MfaChoice::Sms,
            MfaMethod::Email => MfaChoice::Email,
            MfaMethod::Passkey => MfaChoice::Passkey,
        })
        .collect()
}

/// Whether a passkey alone may sign `ctx.account` in here: the organisation allows it, the
/// account may use passkeys and has one, and is not disabled. Never a group account: a shared
/// tablet's screen lock is known to the whole team, so its passkey is a second factor only.
pub fn passwordless(ctx: &Ctx<'_>) -> bool {
    ctx.org.mfa.passwordless
        && ctx.account.kind == AccountKind::Personal
        && ctx.passkeys > 0
        && !ctx.account.disabled
        && allowed_methods(ctx.org, ctx.account).contains(&MfaChoice::Passkey)
}

/// The methods the choice page offers and accepts: allowed here, with a sender in this
/// deployment (a channel without one is not shown at all).
pub fn offered_methods(ctx: &Ctx<'_>) -> Vec<MfaChoice> {
    allowed_methods(ctx.org, ctx.account)
        .into_iter()
        .filter(|m| match m {
            MfaChoice::Sms => ctx.senders.sms,
            MfaChoice::Email => ctx.senders.email,
            MfaChoice::Authenticator | MfaChoice::Passkey => true,
        })
        .collect()
}

/// The other ways a step waiting for the account's own factor offers ("the phone is not at
/// hand"): the account's passkeys, its enrolled authenticator, or a code by a channel the
/// organisation offers, this deployment can send and the account can be reached by; never the
/// factor already in use. Never a new authenticator or passkey: a password alone does not put
/// a factor in place of the one enrolled.
pub fn alternatives(step: &Step, ctx: &Ctx<'_>) -> Vec<MfaChoice> {
    let in_use = match step {
        Step::AwaitingApp { instead: false, .. } => MfaChoice::Authenticator,
        Step::AwaitingPasskey { .. } => MfaChoice::Passkey,
        Step::AwaitingCode {
            channel,
            chosen: false,
            instead: false,
            ..
        } => *channel,
        _ => return Vec::new(),
    };
    other_ways(in_use, ctx)
}

/// The ways of [`alternatives`] next to the factor `in_use`.
fn other_ways(in_use: MfaChoice, ctx: &Ctx<'_>) -> Vec<MfaChoice> {
    let account = ctx.account;
    let app = account.mfa_enrolled
        && account.mfa_method == Some(MfaChoice::Authenticator)
        && account.totp_secret.is_some();
    let mut ways = offered_methods(ctx);
    // The passkey first: the easiest, where the device has it.
    ways.sort_by_key(|m| *m != MfaChoice::Passkey);
    ways.into_iter()
        .filter(|m| *m != in_use)
        .filter(|m| match m {
            MfaChoice::Passkey => ctx.passkeys > 0,
            MfaChoice::Authenticator => app,
            channel => reachable(account, *channel),
        })
        .collect()
}

/// Whether the account can be sent codes by `channel` (it has a number or an address).
pub fn reachable(account: &Account, channel: MfaChoice) -> bool {
    match channel {
        MfaChoice::Authenticator | MfaChoice::Passkey => true,
        MfaChoice::Sms => account.mobile.is_some(),
        MfaChoice::Email => account.email.is_some(),
    }
}

/// The next step of a sign-in in `step` when `event` happens.
pub fn transition(step: &Step, event: Event<'_>, ctx: &Ctx<'_>) -> Next {
    match event {
        Event::PasswordOk => first_step(Method::Password, None, ctx),
        Event::ProviderVouched(mfa) => first_step(Method::Sso, Some(mfa), ctx),
        // The passkey is the password and the second factor in one.
        Event::PasskeySignIn if passwordless(ctx) => {
            let method = Method::Factor(MfaChoice::Passkey);
            let counted = Effect::CountLogin {
                method,
                success: true,
            };
            let proof = Proof {
                method,
                mfa: MfaStatus::Yes,
                trust: false,
            };
            issue(ctx, vec![counted], proof, Finish::Return)
        }
        Event::PasskeySignIn => Next::refuse(step, Some(View::ToLogin)),
        Event::AddFactor => match step {
            Step::SignedIn(done) if done.account == ctx.account.id && done.fresh(ctx.now) => {
                let proven = Proven {
                    org: done.org.clone(),
                    account: done.account.clone(),
                    at: done.at,
                    reproved: false,
                    replacing: false,
                };
                second_factor(proven, ctx, View::ToMfa)
            }
            _ => Next::refuse(step, Some(View::ToLogin)),
        },
        Event::ReplaceFactor => match step {
            Step::SignedIn(done)
                if done.recovered && done.account == ctx.account.id && done.fresh(ctx.now) =>
            {
                let proven = Proven {
                    org: done.org.clone(),
                    account: done.account.clone(),
                    at: done.at,
                    reproved: false,
                    replacing: true,
                };
                second_factor(proven, ctx, View::ToMfa)
            }
            _ => Next::refuse(step, Some(View::ToLogin)),
        },
        event => match (step.proven(), current(step, ctx)) {
            (_, Some(settled)) => during_second_factor(settled, event, ctx),
            // Made void: from the start.
            (Some(_), None) => Next::to(Step::Started, Vec::new(), View::ToLogin),
            // Nothing under way (a completed sign-in stays what it is).
            (None, None) => Next::refuse(step, Some(View::ToLogin)),
        },
    }
}

/// The step of a second factor under way, settled for the account and policy as they are now;
/// `None` when nothing is under way or it was made void.
pub fn current(step: &Step, ctx: &Ctx<'_>) -> Option<Step> {
    let proven = step.proven()?;
    (!void(proven, ctx)).then(|| settle(step, proven.clone(), ctx))
}

/// An account disabled, or reset since it was proven (a new password, an MFA reset), voids the
/// sign-in; as would another account's data (it cannot happen: the handler loads the account
/// the step names).
fn void(proven: &Proven, ctx: &Ctx<'_>) -> bool {
    ctx.account.disabled
        || proven.account != ctx.account.id
        || proven.org != ctx.org.id
        || proven.at < ctx.account.not_valid_before
}

/// The first step is done: the credential now, or on to the second factor with a new session id.
fn first_step(method: Method, provider: Option<ProviderMfa>, ctx: &Ctx<'_>) -> Next {
    let counted = Effect::CountLogin {
        method,
        success: true,
    };
    let mfa = match (mfa_need(ctx.org, ctx.account), provider) {
        (Need::Exempt, _) => Some(MfaStatus::Exempt),
        (_, Some(ProviderMfa::Provider { vouched: true })) => Some(MfaStatus::Yes),
        (_, Some(ProviderMfa::Provider { vouched: false })) | (Need::NotRequired, _) => {
            Some(MfaStatus::None)
        }
        (Need::Required, _) => None,
    };
    if let Some(mfa) = mfa {
        let proof = Proof {
            method,
            mfa,
            trust: false,
        };
        return issue(ctx, vec![counted], proof, Finish::Return);
    }
    let proven = Proven {
        org: ctx.org.id.clone(),
        account: ctx.account.id.clone(),
        at: ctx.now,
        reproved: false,
        replacing: false,
    };
    let mut next = second_factor(proven, ctx, View::ToMfa);
    next.effects.splice(0..0, [counted, Effect::RotateSession]);
    next
}

/// The second factor begins: its step, and the code of a channel sent at once (from the request
/// that completed the step before, never from a page load).
fn second_factor(proven: Proven, ctx: &Ctx<'_>, view: View) -> Next {
    let step = settle(&Step::Started, proven, ctx);
    let effects = match step.channel() {
        Some(channel) => vec![Effect::SendCode {
            channel,
            again: false,
        }],
        None => Vec::new(),
    };
    Next::to(step, effects, view)
}

/// The step of the second factor for the account and policy as they are now, keeping what the
/// step before had that still applies (the method chosen, the secret being enrolled, whether
/// the code went out).
pub fn settle(before: &Step, proven: Proven, ctx: &Ctx<'_>) -> Step {
    let account = ctx.account;
    let allowed = allowed_methods(ctx.org, account);
    // Replacing a lost factor: as if none were enrolled.
    let enrolled = account
        .mfa_method
        .filter(|_| account.mfa_enrolled && !proven.replacing);
    let passkeys = ctx.passkeys > 0 && !proven.replacing;
    let sent = |channel: MfaChoice| {
        if before.channel() == Some(channel) {
            before.sent()
        } else {
            Sent::No
        }
    };
    let stored = enrolled.filter(|m| allowed.contains(m));
    let passkey = passkeys && allowed.contains(&MfaChoice::Passkey);
    // A factor no longer offered is proven once before another is chosen.
    if !passkey && stored.is_none() && !proven.reproved {
        let old = match enrolled {
            Some(MfaChoice::Authenticator) if account.totp_secret.is_none() => None,
            Some(factor) => Some(factor),
            None => None,
        }
        .or(passkeys.then_some(MfaChoice::Passkey));
        if let Some(factor) = old {
            let sent = sent(factor);
            return Step::Reproving {
                proven,
                factor,
                sent,
            };
        }
    }
    // The account's own factor: its passkeys, else its method.
    let own = if passkey {
        Some(MfaChoice::Passkey)
    } else {
        stored
    };
    let chosen = match before {
        Step::Enrolling { chosen: true, .. } => Some(MfaChoice::Authenticator),
        Step::EnrollingPasskey { chosen: true, .. } => Some(MfaChoice::Passkey),
        Step::AwaitingCode {
            channel,
            chosen: true,
            ..
        } => Some(*channel),
        _ => None,
    }
    .filter(|m| allowed.contains(m));
    let secret = match before {
        Step::Enrolling { secret, .. } => secret.clone(),
        _ => None,
    };
    // Another way, picked on this sign-in, while it is still one.
    if let Some(own) = own {
        let instead = match before {
            Step::AwaitingCode {
                channel,
                instead: true,
                ..
            } => Some(*channel),
            Step::AwaitingApp { instead: true, .. } => Some(MfaChoice::Authenticator),
            _ => None,
        }
        .filter(|way| other_ways(own, ctx).contains(way));
        match instead {
            Some(MfaChoice::Authenticator) => {
                return Step::AwaitingApp {
                    proven,
                    instead: true,
                }
            }
            // (Never the passkey: with one, it is the account's own factor.)
            Some(MfaChoice::Passkey) | None => {}
            Some(channel) => {
                return Step::AwaitingCode {
                    proven,
                    channel,
                    chosen: false,
                    sent: sent(channel),
                    instead: true,
                }
            }
        }
    }
    match (own, chosen) {
        (Some(MfaChoice::Passkey), _) => Step::AwaitingPasskey { proven },
        (Some(MfaChoice::Authenticator), _) if account.totp_secret.is_some() => Step::AwaitingApp {
            proven,
            instead: false,
        },
        (Some(MfaChoice::Authenticator), _) => Step::Enrolling {
            proven,
            chosen: false,
            secret,
        },
        (Some(channel), _) => Step::AwaitingCode {
            proven,
            channel,
            chosen: false,
            sent: sent(channel),
            instead: false,
        },
        (None, Some(MfaChoice::Authenticator)) => Step::Enrolling {
            proven,
            chosen: true,
            secret,
        },
        (None, Some(MfaChoice::Passkey)) => Step::EnrollingPasskey {
            proven,
            chosen: true,
        },
        (None, Some(channel)) => Step::AwaitingCode {
            proven,
            channel,
            chosen: true,
            sent: sent(channel),
            instead: false,
        },
        (None, None) if allowed == [MfaChoice::Authenticator] => Step::Enrolling {
            proven,
            chosen: false,
            secret,
        },
        (None, None) if allowed == [MfaChoice::Passkey] => Step::EnrollingPasskey {
            proven,
            chosen: false,
        },
        (None, None) => Step::Choosing { proven },
    }
}

/// An event in a step of the second factor (already settled).
fn during_second_factor(step: Step, event: Event<'_>, ctx: &Ctx<'_>) -> Next {
    match event {
        Event::Show => match &step {
            Step::Enrolling { secret: None, .. } => {
                Next::to(step, vec![Effect::SealNewSecret], page(None))
            }
            _ => {
                let message = match step.sent() {
                    Sent::Not(problem) => Some(Message::NotSent(problem)),
                    Sent::No | Sent::Yes => None,
                };
                Next::show(&step, message)
            }
        },
        Event::SecretSealed(sealed) => match step {
            Step::Enrolling {
                proven,
                chosen,
                secret: None,
            } => Next::taken(
                Step::Enrolling {
                    proven,
                    chosen,
                    secret: Some(sealed),
                },
                Vec::new(),
                None,
            ),
            step => Next::refuse(&step, None),
        },
        Event::Chose(name) => choose(step, name, ctx),
        Event::Instead(name) => {
            let other = MfaChoice::from_name(name).filter(|m| alternatives(&step, ctx).contains(m));
            match (other, step.proven()) {
                (Some(MfaChoice::Authenticator), Some(proven)) => Next::to(
                    Step::AwaitingApp {
                        proven: proven.clone(),
                        instead: true,
                    },
                    Vec::new(),
                    View::ToMfa,
                ),
                // (Not offered: with a passkey, it is the account's own factor.)
                (Some(MfaChoice::Passkey), _) => Next::refuse(&step, Some(View::ToMfa)),
                (Some(channel), Some(proven)) => Next::to(
                    Step::AwaitingCode {
                        proven: proven.clone(),
                        channel,
                        chosen: false,
                        sent: Sent::No,
                        instead: true,
                    },
                    vec![Effect::SendCode {
                        channel,
                        again: false,
                    }],
                    View::ToMfa,
                ),
                _ => Next::refuse(&step, Some(View::ToMfa)),
            }
        }
        Event::Resend => match step.channel() {
            Some(channel) => Next::to(
                step,
                vec![Effect::SendCode {
                    channel,
                    again: true,
                }],
                page(None),
            ),
            None => Next::refuse(&step, Some(View::ToMfa)),
        },
        Event::CodeSent { .. } | Event::CodeNotSent { .. } if step.channel().is_none() => {
            Next::refuse(&step, None)
        }
        Event::CodeSent { again } => {
            let view = again.then_some(page(Some(Message::Resent)));
            Next::taken(step.with_sent(Sent::Yes), Vec::new(), view)
        }
        Event::CodeNotSent { again, problem } => {
            // A code sent before stays good when another cannot be sent.
            let sent = match step.sent() {
                Sent::Yes => Sent::Yes,
                _ => Sent::Not(problem),
            };
            let view = again.then_some(page(Some(Message::NotSent(problem))));
            Next::taken(step.with_sent(sent), Vec::new(), view)
        }
        Event::CodeRight { trust } => code_right(step, trust, ctx),
        Event::PasskeyMade { passkey, trust } => match step {
            Step::EnrollingPasskey { proven, .. } => {
                let factor = MfaChoice::Passkey;
                // New recovery codes with a first factor, or in place of a lost one.
                let recovery_codes = proven.replacing || ctx.account.recovery_codes.is_empty();
                let before = vec![
                    Effect::StorePasskey {
                        passkey: passkey.to_owned(),
                        recovery_codes,
                        replacing: proven.replacing,
                    },
                    Effect::Audit(if proven.replacing {
                        Audit::FactorReplaced(factor)
                    } else {
                        Audit::FactorEnrolled(factor)
                    }),
                    Effect::NotifyFactorAdded(factor),
                    Effect::CountLogin {
                        method: Method::Factor(factor),
                        success: true,
                    },
                ];
                let proof = Proof {
                    method: Method::Factor(factor),
                    mfa: MfaStatus::Yes,
                    trust,
                };
                let finish = if recovery_codes {
                    Finish::RecoveryCodes
                } else {
                    Finish::Return
                };
                issue(ctx, before, proof, finish)
            }
            step => Next::refuse(&step, Some(View::ToMfa)),
        },
        Event::PasskeyWrong { cloned } => match step.awaiting() {
            // A passkey that could not be made guessed nothing: the page again, with a word.
            Some(Awaiting::NewPasskey) => Next::show(&step, Some(Message::PasskeyFailed)),
            Some(Awaiting::Passkey) => {
                let method = Method::Factor(MfaChoice::Passkey);
                let mut next = wrong_guess(&step, method, Message::PasskeyFailed, false);
                if cloned {
                    next.effects.push(Effect::Audit(Audit::PasskeyCloned));
                }
                next
            }
            _ => Next::refuse(&step, Some(View::ToMfa)),
        },
        Event::CodeWrong { trust, gone } => match step.factor() {
            Some(factor) if step.awaiting().is_some() => {
                let message = if gone {
                    Message::NoCode
                } else {
                    Message::WrongCode
                };
                wrong_guess(&step, Method::Factor(factor), message, trust)
            }
            _ => Next::refuse(&step, Some(View::ToMfa)),
        },
        Event::RecoveryRight { left } => {
            let proof = Proof {
                method: Method::Recovery,
                mfa: MfaStatus::Yes,
                trust: false,
            };
            let before = vec![
                Effect::Audit(Audit::RecoveryCodeUsed),
                Effect::CountLogin {
                    method: Method::Recovery,
                    success: true,
                },
            ];
            issue(ctx, before, proof, Finish::RecoveryLeft(left))
        }
        Event::RecoveryWrong => wrong_guess(&step, Method::Recovery, Message::WrongCode, false),
        Event::Back => match step {
            Step::Enrolling {
                proven,
                chosen: true,
                ..
            }
            | Step::AwaitingCode {
                proven,
                chosen: true,
                ..
            } => Next::to(Step::Choosing { proven }, Vec::new(), View::ToMfa),
            Step::EnrollingPasskey {
                proven,
                chosen: true,
            } => Next::to(Step::Choosing { proven }, Vec::new(), View::ToMfa),
            // From another way back to the account's own factor (its code sent again).
            Step::AwaitingCode {
                proven,
                instead: true,
                ..
            }
            | Step::AwaitingApp {
                proven,
                instead: true,
            } => second_factor(proven, ctx, View::ToMfa),
            _ => Next::to(Step::Started, Vec::new(), View::Restart),
        },
        // Handled before a step of the second factor is looked at.
        Event::PasswordOk
        | Event::ProviderVouched(_)
        | Event::PasskeySignIn
        | Event::AddFactor
        | Event::ReplaceFactor => Next::refuse(&step, Some(View::ToMfa)),
    }
}

fn page(message: Option<Message>) -> View {
    View::Page {
        message,
        trust: false,
    }
}

/// A choice, on the choice page or again after one made on this visit (the browser's back
/// button); a stored factor is not changed here.
fn choose(step: Step, name: &str, ctx: &Ctx<'_>) -> Next {
    let proven = match step {
        Step::Choosing { proven }
        | Step::Enrolling {
            proven,
            chosen: true,
            ..
        }
        | Step::EnrollingPasskey {
            proven,
            chosen: true,
        }
        | Step::AwaitingCode {
            proven,
            chosen: true,
            ..
        } => proven,
        step => return Next::refuse(&step, Some(View::ToMfa)),
    };
    let usable = MfaChoice::from_name(name)
        .filter(|m| offered_methods(ctx).contains(m) && reachable(ctx.account, *m));
    match usable {
        None => Next::to(
            Step::Choosing { proven },
            Vec::new(),
            page(Some(Message::ChooseOne)),
        ),
        Some(MfaChoice::Authenticator) => Next::to(
            Step::Enrolling {
                proven,
                chosen: true,
                secret: None,
            },
            Vec::new(),
            View::ToMfa,
        ),
        Some(MfaChoice::Passkey) => Next::to(
            Step::EnrollingPasskey {
                proven,
                chosen: true,
            },
            Vec::new(),
            View::ToMfa,
        ),
        Some(channel) => Next::to(
            Step::AwaitingCode {
                proven,
                channel,
                chosen: true,
                sent: Sent::No,
                instead: false,
            },
            vec![Effect::SendCode {
                channel,
                again: false,
            }],
            View::ToMfa,
        ),
    }
}

fn code_right(step: Step, trust: bool, ctx: &Ctx<'_>) -> Next {
    if step.awaiting().is_none() {
        return Next::refuse(&step, Some(View::ToMfa));
    }
    let success = |factor| Effect::CountLogin {
        method: Method::Factor(factor),
        success: true,
    };
    let proof = |factor| Proof {
        method: Method::Factor(factor),
        mfa: MfaStatus::Yes,
        trust,
    };
    match step {
        Step::Reproving { mut proven, .. } => {
            // The old factor is proven; now one the organisation offers.
            proven.reproved = true;
            let step = settle(&Step::Started, proven, ctx);
            Next::to(step, Vec::new(), View::ToMfa)
        }
        Step::AwaitingApp { .. } => {
            let factor = MfaChoice::Authenticator;
            issue(ctx, vec![success(factor)], proof(factor), Finish::Return)
        }
        Step::AwaitingPasskey { .. } => {
            let factor = MfaChoice::Passkey;
            issue(ctx, vec![success(factor)], proof(factor), Finish::Return)
        }
        Step::Enrolling { secret, proven, .. } => {
            let factor = MfaChoice::Authenticator;
            let mut before = replaced(&proven);
            before.extend([
                Effect::StoreFactor {
                    factor,
                    secret,
                    recovery_codes: true,
                    replacing: proven.replacing,
                },
                Effect::Audit(if proven.replacing {
                    Audit::FactorReplaced(factor)
                } else {
                    Audit::FactorEnrolled(factor)
                }),
                Effect::NotifyFactorAdded(factor),
                success(factor),
            ]);
            issue(ctx, before, proof(factor), Finish::RecoveryCodes)
        }
        Step::AwaitingCode {
            channel,
            instead,
            proven,
            ..
        } => {
            let account = ctx.account;
            let mut before = replaced(&proven);
            if proven.replacing {
                // The lost factor goes, whatever it was; this channel (and new recovery codes,
                // shown once) in its place.
                before.extend([
                    Effect::StoreFactor {
                        factor: channel,
                        secret: None,
                        recovery_codes: true,
                        replacing: true,
                    },
                    Effect::Audit(Audit::FactorReplaced(channel)),
                    Effect::NotifyFactorAdded(channel),
                    success(channel),
                ]);
                return issue(ctx, before, proof(channel), Finish::RecoveryCodes);
            }
            // Another way proves this sign-in only; the account's own factor stays.
            let first = !instead && (!account.mfa_enrolled || account.mfa_method != Some(channel));
            // A first factor comes with recovery codes, whatever the method, unless the account
            // has some already (kept from a factor before).
            let recovery_codes = first && account.recovery_codes.is_empty();
            if first {
                // The first code by this channel: the choice is stored, and the user told.
                before.extend([
                    Effect::StoreFactor {
                        factor: channel,
                        secret: None,
                        recovery_codes,
                        replacing: false,
                    },
                    Effect::Audit(Audit::FactorEnrolled(channel)),
                    Effect::NotifyFactorAdded(channel),
                ]);
            }
            before.push(success(channel));
            let finish = if recovery_codes {
                Finish::RecoveryCodes
            } else {
                Finish::Return
            };
            issue(ctx, before, proof(channel), finish)
        }
        step => Next::refuse(&step, Some(View::ToMfa)),
    }
}

/// What goes first when a factor is set up in place of a lost one: the passkeys (they may be
/// on the lost phone).
fn replaced(proven: &Proven) -> Vec<Effect> {
    if proven.replacing {
        vec![Effect::RemovePasskeys]
    } else {
        Vec::new()
    }
}

/// A wrong guess: counted and audited; the step stays.
fn wrong_guess(step: &Step, method: Method, message: Message, trust: bool) -> Next {
    Next::to(
        step.clone(),
        vec![
            Effect::CountLogin {
                method,
                success: false,
            },
            Effect::Audit(Audit::Failed(method)),
        ],
        View::Refused { message, trust },
    )
}

/// Signed in: `before`, then the credential.
fn issue(ctx: &Ctx<'_>, mut effects: Vec<Effect>, proof: Proof, finish: Finish) -> Next {
    effects.push(Effect::Issue(proof));
    let done = SignedIn {
        org: ctx.org.id.clone(),
        account: ctx.account.id.clone(),
        at: ctx.now,
        mfa: proof.mfa,
        recovered: proof.method == Method::Recovery,
    };
    Next::to(Step::SignedIn(done), effects, View::Done(finish))
}
