//! The portal's words in Dutch and English. A page's language is the first of the browser's
//! `Accept-Language` the portal speaks, else the organisation's `default_language`.

use std::time::Duration;

use certgate_policies::Language;

/// Every sentence a page or message shows. `{n}`, `{org}` and `{to}` are filled in.
pub struct Texts {
    pub lang: &'static str,
    pub sign_in: &'static str,
    pub sign_in_to: &'static str,
    pub organisation: &'static str,
    pub organisation_hint: &'static str,
    pub remember_organisation: &'static str,
    pub username: &'static str,
    pub password: &'static str,
    pub forgot_password: &'static str,
    pub or: &'static str,
    pub sign_in_with: &'static str,
    pub bad_login: &'static str,
    pub session_expired: &'static str,
    pub too_many: &'static str,
    pub unknown_organisation: &'static str,
    pub choose_heading: &'static str,
    pub choose_intro: &'static str,
    pub method_authenticator: &'static str,
    pub method_sms: &'static str,
    pub method_sms_plain: &'static str,
    pub method_email_plain: &'static str,
    pub method_email: &'static str,
    pub no_mobile: &'static str,
    pub no_email: &'static str,
    pub continue_: &'static str,
    pub enrol_heading: &'static str,
    pub enrol_scan: &'static str,
    pub enrol_trouble: &'static str,
    pub copy: &'static str,
    pub enrol_enter: &'static str,
    pub confirm: &'static str,
    pub code_heading: &'static str,
    pub code_sent_to: &'static str,
    pub code_from_app: &'static str,
    pub code: &'static str,
    pub trust_device: &'static str,
    pub verify: &'static str,
    pub use_recovery: &'static str,
    pub back: &'static str,
    pub resend: &'static str,
    pub resent: &'static str,
    pub wrong_code: &'static str,
    pub no_code: &'static str,
    pub send_failed: &'static str,
    pub recovery_heading: &'static str,
    pub recovery_code: &'static str,
    pub recovery_left: &'static str,
    pub codes_heading: &'static str,
    pub codes_advice: &'static str,
    pub codes_continue: &'static str,
    pub logout_heading: &'static str,
    pub logout_question: &'static str,
    pub logout_button: &'static str,
    pub logout_group_keep: &'static str,
    pub logout_group_keep_hint: &'static str,
    pub logout_group_forget: &'static str,
    pub logout_group_forget_hint: &'static str,
    pub logged_out: &'static str,
    pub signed_out_kept: &'static str,
    pub sign_in_again: &'static str,
    pub forgot_heading: &'static str,
    pub forgot_intro: &'static str,
    pub forgot_send: &'static str,
    pub forgot_sent: &'static str,
    pub reset_heading: &'static str,
    pub new_password: &'static str,
    pub repeat_password: &'static str,
    pub save_password: &'static str,
    pub password_too_short: &'static str,
    pub password_mismatch: &'static str,
    pub password_too_long: &'static str,
    pub choose_one: &'static str,
    pub reset_invalid: &'static str,
    pub reset_done: &'static str,
    pub trouble: &'static str,
    pub not_found: &'static str,
    pub forbidden: &'static str,
    pub days: &'static str,
    pub day: &'static str,
    pub hours: &'static str,
    pub hour: &'static str,
    pub minutes: &'static str,
    pub minute: &'static str,
    pub seconds: &'static str,
    pub second: &'static str,
    pub mail_code_subject: &'static str,
    pub mail_code_body: &'static str,
    pub sms_code: &'static str,
    pub mail_reset_subject: &'static str,
    pub mail_reset_body: &'static str,
    pub mail_welcome_subject: &'static str,
    pub mail_welcome_body: &'static str,
    pub mail_password_changed_subject: &'static str,
    pub mail_password_changed_body: &'static str,
    pub mail_mfa_reset_subject: &'static str,
    pub mail_mfa_reset_body: &'static str,
    pub mail_factor_subject: &'static str,
    pub mail_factor_body: &'static str,
    pub mail_trusted_subject: &'static str,
    pub mail_trusted_body: &'static str,
    pub mail_signature: &'static str,
}

pub static EN: Texts = Texts {
    lang: "en",
    sign_in: "Sign in",
    sign_in_to: "Sign in to {org}",
    organisation: "Organisation",
    organisation_hint: "The short name your organisation gave you, for example \u{201c}noord\u{201d}.",
    remember_organisation: "Remember my organisation on this device",
    username: "Username or e-mail address",
    password: "Password",
    forgot_password: "Forgot your password?",
    or: "or",
    sign_in_with: "Sign in with {org}",
    bad_login: "The username or password is not correct, or the account cannot sign in. Check them and try again.",
    session_expired: "This page had expired. Please try again.",
    too_many: "Too many attempts. Please wait {n} and try again.",
    unknown_organisation: "We do not know this organisation. Check the name and try again.",
    choose_heading: "How do you want to confirm it is you?",
    choose_intro: "Each time you sign in on a new device, you also enter a code. Choose how you want to receive it. You can ask your administrator to change this later.",
    method_authenticator: "Authenticator app on your phone",
    method_sms: "Text message to {to}",
    method_sms_plain: "Text message",
    method_email_plain: "E-mail",
    method_email: "E-mail to {to}",
    no_mobile: "Not available: no mobile number is known for your account. Ask your administrator to add one.",
    no_email: "Not available: no e-mail address is known for your account. Ask your administrator to add one.",
    continue_: "Continue",
    enrol_heading: "Set up your authenticator app",
    enrol_scan: "Open your authenticator app (for example Microsoft Authenticator or Google Authenticator), add an account and scan this QR code.",
    enrol_trouble: "Trouble scanning? Enter this key in the app instead:",
    copy: "Copy",
    enrol_enter: "Then enter the 6-digit code the app shows.",
    confirm: "Confirm",
    code_heading: "Enter your code",
    code_sent_to: "A code was sent to {to}. It is valid for 10 minutes.",
    code_from_app: "Enter the 6-digit code from your authenticator app.",
    code: "Code",
    trust_device: "Trust this device for {n}",
    verify: "Verify",
    use_recovery: "Use a recovery code",
    back: "Back",
    resend: "Send a new code",
    resent: "A new code was sent.",
    wrong_code: "The code is not correct. Check it and try again.",
    no_code: "This code is no longer valid. Send a new code and try again.",
    send_failed: "The code could not be sent right now. Try again in a moment, or ask your administrator for help.",
    recovery_heading: "Use a recovery code",
    recovery_code: "Recovery code",
    recovery_left: "You used a recovery code. You have {n} left; ask your administrator to reset your second factor if you lost your phone.",
    codes_heading: "Your recovery codes",
    codes_advice: "If you lose your phone, you can sign in with one of these codes. Each code works once. Store them somewhere safe, for example printed and kept in a locked drawer. They are shown only now.",
    codes_continue: "I have stored them, continue",
    logout_heading: "Sign out",
    logout_question: "Do you want to sign out on this device? You will need to sign in again to use the application.",
    logout_button: "Sign out",
    logout_group_keep: "Sign out",
    logout_group_keep_hint: "Ends your session in the application. This tablet stays trusted for the team.",
    logout_group_forget: "Forget this device",
    logout_group_forget_hint: "This tablet must be signed in again, with the account\u{2019}s password and code.",
    logged_out: "You are signed out on this device.",
    signed_out_kept: "You are signed out. This tablet is still trusted.",
    sign_in_again: "Sign in again",
    forgot_heading: "Forgot your password?",
    forgot_intro: "Enter your username or e-mail address. If we know it, we send you an e-mail with a link to choose a new password.",
    forgot_send: "Send the link",
    forgot_sent: "If an account with this name exists and has an e-mail address, we have sent it a link. The link works once, for one hour. Check your spam folder too.",
    reset_heading: "Choose a new password",
    new_password: "New password (at least 10 characters)",
    repeat_password: "Repeat the new password",
    save_password: "Save password",
    password_too_short: "The password must be at least 10 characters long.",
    password_mismatch: "The two passwords are not the same.",
    password_too_long: "The password can be at most 256 characters long.",
    choose_one: "Choose one of the ways to receive your code.",
    reset_invalid: "This link is no longer valid. Links work once, for one hour. Request a new one.",
    reset_done: "Your password has been changed. You can sign in now.",
    trouble: "Something went wrong on our side. Please try again in a moment.",
    not_found: "This page does not exist.",
    forbidden: "The portal can only be reached through the gateway.",
    days: "days",
    day: "day",
    hours: "hours",
    hour: "hour",
    minutes: "minutes",
    minute: "minute",
    seconds: "seconds",
    second: "second",
    mail_code_subject: "Your sign-in code for {org}",
    mail_code_body: "Your sign-in code is {n}.\n\nIt is valid for 10 minutes. If you did not try to sign in, you can ignore this e-mail; someone may have typed your address by mistake.",
    sms_code: "{n} is your sign-in code for {org}. Valid for 10 minutes.",
    mail_reset_subject: "Choose a new password for {org}",
    mail_reset_body: "Someone (probably you) asked to choose a new password for your account at {org}.\n\nOpen this link within one hour to choose it:\n{to}\n\nIf you did not ask for this, you can ignore this e-mail; your password stays the same.",
    mail_welcome_subject: "Your account at {org}",
    mail_welcome_body: "An account has been made for you at {org}. Your username is {n}.\n\nTo choose your password, open the application, choose \u{201c}Forgot your password?\u{201d} and enter your username.",
    mail_password_changed_subject: "Your password for {org} was changed",
    mail_password_changed_body: "The password of your account at {org} was changed. If you did not do this, contact your administrator at once.",
    mail_mfa_reset_subject: "Your second factor for {org} was reset",
    mail_mfa_reset_body: "An administrator reset the second factor (authenticator app, SMS or e-mail code) of your account at {org}. Your devices must sign in again, and you choose a new method at the next sign-in. If you did not ask for this, contact your administrator at once.",
    mail_factor_subject: "A new sign-in method for {org}",
    mail_factor_body: "A new way to confirm your sign-in ({n}) was set up for your account at {org}. If you did not do this, contact your administrator at once.",
    mail_trusted_subject: "A device is trusted for your account at {org}",
    mail_trusted_body: "You signed in at {org} and chose to trust the device for {n} (from address {to}). If this was not you, contact your administrator at once.",
    mail_signature: "\n\n-- \ncertgate sign-in for {org}",
};

pub static NL: Texts = Texts {
    lang: "nl",
    sign_in: "Inloggen",
    sign_in_to: "Inloggen bij {org}",
    organisation: "Organisatie",
    organisation_hint: "De korte naam die uw organisatie u gaf, bijvoorbeeld \u{201c}noord\u{201d}.",
    remember_organisation: "Mijn organisatie onthouden op dit apparaat",
    username: "Gebruikersnaam of e-mailadres",
    password: "Wachtwoord",
    forgot_password: "Wachtwoord vergeten?",
    or: "of",
    sign_in_with: "Inloggen met {org}",
    bad_login: "De gebruikersnaam of het wachtwoord klopt niet, of het account kan niet inloggen. Controleer ze en probeer het opnieuw.",
    session_expired: "Deze pagina was verlopen. Probeer het opnieuw.",
    too_many: "Te veel pogingen. Wacht {n} en probeer het dan opnieuw.",
    unknown_organisation: "Deze organisatie kennen we niet. Controleer de naam en probeer het opnieuw.",
    choose_heading: "Hoe wilt u bevestigen dat u het bent?",
    choose_intro: "Elke keer dat u op een nieuw apparaat inlogt, voert u ook een code in. Kies hoe u die wilt ontvangen. U kunt uw beheerder vragen dit later te wijzigen.",
    method_authenticator: "Authenticator-app op uw telefoon",
    method_sms: "Sms naar {to}",
    method_sms_plain: "Sms",
    method_email_plain: "E-mail",
    method_email: "E-mail naar {to}",
    no_mobile: "Niet beschikbaar: er is geen mobiel nummer bekend voor uw account. Vraag uw beheerder om het toe te voegen.",
    no_email: "Niet beschikbaar: er is geen e-mailadres bekend voor uw account. Vraag uw beheerder om het toe te voegen.",
    continue_: "Doorgaan",
    enrol_heading: "Uw authenticator-app instellen",
    enrol_scan: "Open uw authenticator-app (bijvoorbeeld Microsoft Authenticator of Google Authenticator), voeg een account toe en scan deze QR-code.",
    enrol_trouble: "Lukt scannen niet? Voer dan deze sleutel in de app in:",
    copy: "Kopi\u{eb}ren",
    enrol_enter: "Voer daarna de 6-cijferige code in die de app toont.",
    confirm: "Bevestigen",
    code_heading: "Voer uw code in",
    code_sent_to: "Er is een code verstuurd naar {to}. De code is 10 minuten geldig.",
    code_from_app: "Voer de 6-cijferige code uit uw authenticator-app in.",
    code: "Code",
    trust_device: "Dit apparaat {n} vertrouwen",
    verify: "Controleren",
    use_recovery: "Een herstelcode gebruiken",
    back: "Terug",
    resend: "Stuur een nieuwe code",
    resent: "Er is een nieuwe code verstuurd.",
    wrong_code: "De code klopt niet. Controleer de code en probeer het opnieuw.",
    no_code: "Deze code is niet meer geldig. Vraag een nieuwe code aan en probeer het opnieuw.",
    send_failed: "De code kon nu niet worden verstuurd. Probeer het zo opnieuw, of vraag uw beheerder om hulp.",
    recovery_heading: "Een herstelcode gebruiken",
    recovery_code: "Herstelcode",
    recovery_left: "U heeft een herstelcode gebruikt. U heeft er nog {n}; vraag uw beheerder uw tweede factor opnieuw in te stellen als u uw telefoon kwijt bent.",
    codes_heading: "Uw herstelcodes",
    codes_advice: "Als u uw telefoon kwijtraakt, kunt u met een van deze codes inloggen. Elke code werkt \u{e9}\u{e9}n keer. Bewaar ze op een veilige plek, bijvoorbeeld geprint in een afgesloten la. Ze worden alleen nu getoond.",
    codes_continue: "Ik heb ze bewaard, doorgaan",
    logout_heading: "Uitloggen",
    logout_question: "Wilt u uitloggen op dit apparaat? Daarna moet u opnieuw inloggen om de applicatie te gebruiken.",
    logout_button: "Uitloggen",
    logout_group_keep: "Uitloggen",
    logout_group_keep_hint: "Be\u{eb}indigt uw sessie in de applicatie. Deze tablet blijft vertrouwd voor het team.",
    logout_group_forget: "Dit apparaat vergeten",
    logout_group_forget_hint: "Deze tablet moet daarna opnieuw inloggen, met het wachtwoord en de code van het account.",
    logged_out: "U bent uitgelogd op dit apparaat.",
    signed_out_kept: "U bent uitgelogd. Deze tablet blijft vertrouwd.",
    sign_in_again: "Opnieuw inloggen",
    forgot_heading: "Wachtwoord vergeten?",
    forgot_intro: "Voer uw gebruikersnaam of e-mailadres in. Als we het kennen, sturen we u een e-mail met een link om een nieuw wachtwoord te kiezen.",
    forgot_send: "Link versturen",
    forgot_sent: "Als er een account met deze naam en een e-mailadres bestaat, hebben we een link gestuurd. De link werkt \u{e9}\u{e9}n keer, een uur lang. Kijk ook in uw map met ongewenste e-mail.",
    reset_heading: "Kies een nieuw wachtwoord",
    new_password: "Nieuw wachtwoord (minstens 10 tekens)",
    repeat_password: "Herhaal het nieuwe wachtwoord",
    save_password: "Wachtwoord opslaan",
    password_too_short: "Het wachtwoord moet minstens 10 tekens lang zijn.",
    password_mismatch: "De twee wachtwoorden zijn niet gelijk.",
    password_too_long: "Het wachtwoord mag hoogstens 256 tekens lang zijn.",
    choose_one: "Kies een van de manieren om uw code te ontvangen.",
    reset_invalid: "Deze link is niet meer geldig. Links werken \u{e9}\u{e9}n keer, een uur lang. Vraag een nieuwe aan.",
    reset_done: "Uw wachtwoord is gewijzigd. U kunt nu inloggen.",
    trouble: "Er ging bij ons iets mis. Probeer het zo opnieuw.",
    not_found: "Deze pagina bestaat niet.",
    forbidden: "Het portaal is alleen via de gateway bereikbaar.",
    days: "dagen",
    day: "dag",
    hours: "uur",
    hour: "uur",
    minutes: "minuten",
    minute: "minuut",
    seconds: "seconden",
    second: "seconde",
    mail_code_subject: "Uw inlogcode voor {org}",
    mail_code_body: "Uw inlogcode is {n}.\n\nDe code is 10 minuten geldig. Heeft u niet geprobeerd in te loggen, dan kunt u deze e-mail negeren; misschien heeft iemand uw adres per ongeluk ingevuld.",
    sms_code: "{n} is uw inlogcode voor {org}. 10 minuten geldig.",
    mail_reset_subject: "Kies een nieuw wachtwoord voor {org}",
    mail_reset_body: "Iemand (waarschijnlijk u) heeft gevraagd een nieuw wachtwoord te kiezen voor uw account bij {org}.\n\nOpen binnen een uur deze link om het te kiezen:\n{to}\n\nHeeft u dit niet gevraagd, dan kunt u deze e-mail negeren; uw wachtwoord blijft hetzelfde.",
    mail_welcome_subject: "Uw account bij {org}",
    mail_welcome_body: "Er is een account voor u gemaakt bij {org}. Uw gebruikersnaam is {n}.\n\nOm uw wachtwoord te kiezen opent u de applicatie, kiest u \u{201c}Wachtwoord vergeten?\u{201d} en voert u uw gebruikersnaam in.",
    mail_password_changed_subject: "Uw wachtwoord voor {org} is gewijzigd",
    mail_password_changed_body: "Het wachtwoord van uw account bij {org} is gewijzigd. Heeft u dit niet gedaan, neem dan direct contact op met uw beheerder.",
    mail_mfa_reset_subject: "Uw tweede factor voor {org} is opnieuw ingesteld",
    mail_mfa_reset_body: "Een beheerder heeft de tweede factor (authenticator-app, sms- of e-mailcode) van uw account bij {org} gewist. Uw apparaten moeten opnieuw inloggen, en bij de volgende keer inloggen kiest u een nieuwe methode. Heeft u hier niet om gevraagd, neem dan direct contact op met uw beheerder.",
    mail_factor_subject: "Een nieuwe inlogmethode voor {org}",
    mail_factor_body: "Er is een nieuwe manier om uw inloggen te bevestigen ({n}) ingesteld voor uw account bij {org}. Heeft u dit niet gedaan, neem dan direct contact op met uw beheerder.",
    mail_trusted_subject: "Een apparaat wordt vertrouwd voor uw account bij {org}",
    mail_trusted_body: "U heeft ingelogd bij {org} en gekozen het apparaat {n} te vertrouwen (vanaf adres {to}). Was u dit niet, neem dan direct contact op met uw beheerder.",
    mail_signature: "\n\n-- \ncertgate-inlog voor {org}",
};

impl Texts {
    pub fn of(language: Language) -> &'static Texts {
        match language {
            Language::Nl => &NL,
            Language::En => &EN,
        }
    }

    /// "7 days", "12 uur", "1 minute": the largest whole unit.
    pub fn duration(&self, duration: Duration) -> String {
        let secs = duration.as_secs();
        let (n, one, many) = if secs >= 86_400 && secs % 86_400 == 0 {
            (secs / 86_400, self.day, self.days)
        } else if secs >= 3_600 && secs % 3_600 == 0 {
            (secs / 3_600, self.hour, self.hours)
        } else if secs >= 60 {
            (secs.div_ceil(60), self.minute, self.minutes)
        } else {
            (secs.max(1), self.second, self.seconds)
        };
        format!("{n} {}", if n == 1 { one } else { many })
    }
}

/// Fills `{org}`, `{n}` and `{to}` into a sentence.
pub fn fill(text: &str, org: &str, n: &str, to: &str) -> String {
    text.replace("{org}", org)
        .replace("{n}", n)
        .replace("{to}", to)
}

/// The page language: the first `Accept-Language` range the portal speaks (by quality), else
/// the organisation's default.
pub fn negotiate(accept_language: Option<&str>, default: Language) -> Language {
    let Some(header) = accept_language else {
        return default;
    };
    let mut best: Option<(f32, Language)> = None;
    for (position, range) in header.split(',').enumerate().take(32) {
        let mut parts = range.split(';');
        let tag = parts.next().unwrap_or_default().trim().to_ascii_lowercase();
        let quality = parts
            .find_map(|p| p.trim().strip_prefix("q=").map(str::trim))
            .map_or(Some(1.0), |q| q.parse::<f32>().ok())
            .unwrap_or(0.0);
        let primary = tag.split('-').next().unwrap_or_default();
        let language = match primary {
            "nl" => Language::Nl,
            "en" => Language::En,
            _ => continue,
        };
        // Earlier ranges win ties.
        let score = quality - position as f32 * 1e-4;
        if quality > 0.0 && best.is_none_or(|(b, _)| score > b) {
            best = Some((score, language));
        }
    }
    best.map_or(default, |(_, language)| language)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_browser_language_wins_over_the_default() {
        assert_eq!(
            negotiate(Some("nl-NL,nl;q=0.9,en;q=0.8"), Language::En),
            Language::Nl
        );
        assert_eq!(
            negotiate(Some("en-GB,en;q=0.9"), Language::Nl),
            Language::En
        );
        assert_eq!(
            negotiate(Some("de-DE,en;q=0.5,nl;q=0.7"), Language::En),
            Language::Nl
        );
        assert_eq!(negotiate(Some("fr, de"), Language::Nl), Language::Nl);
        assert_eq!(negotiate(Some("en;q=0"), Language::Nl), Language::Nl);
        assert_eq!(negotiate(Some("en;q=x,,;;"), Language::Nl), Language::Nl);
        assert_eq!(negotiate(None, Language::En), Language::En);
    }

    #[test]
    fn durations_read_naturally() {
        assert_eq!(EN.duration(Duration::from_secs(7 * 86_400)), "7 days");
        assert_eq!(NL.duration(Duration::from_secs(86_400)), "1 dag");
        assert_eq!(NL.duration(Duration::from_secs(12 * 3_600)), "12 uur");
        assert_eq!(EN.duration(Duration::from_secs(90)), "2 minutes");
        assert_eq!(EN.duration(Duration::from_secs(1)), "1 second");
        assert_eq!(NL.duration(Duration::from_secs(40)), "40 seconden");
    }
}
