//! The few responses the gateway writes itself: unknown host, bad request, sign-in needed,
//! upstream down.
//! Plain, bilingual, no details of the failure (those go to the log).

pub const UNKNOWN_HOST: &str = r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>Unknown address</title></head>
<body style="font-family:system-ui,sans-serif;max-width:36rem;margin:3rem auto;padding:0 1rem;line-height:1.5">
<h1>This address is not served here</h1>
<p>The gateway does not know this web address. Check the link or ask your administrator.</p>
<p lang="nl">Dit adres is hier niet bekend. Controleer de link of vraag het uw beheerder.</p>
</body></html>
"#;

pub const UPSTREAM_DOWN: &str = r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>Application unavailable</title></head>
<body style="font-family:system-ui,sans-serif;max-width:36rem;margin:3rem auto;padding:0 1rem;line-height:1.5">
<h1>The application is not reachable right now</h1>
<p>Please try again in a few minutes. If this keeps happening, tell your administrator.</p>
<p lang="nl">De applicatie is nu niet bereikbaar. Probeer het over een paar minuten opnieuw. Blijft dit gebeuren, meld het dan bij uw beheerder.</p>
</body></html>
"#;

pub const UPSTREAM_TIMEOUT: &str = r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>Application too slow</title></head>
<body style="font-family:system-ui,sans-serif;max-width:36rem;margin:3rem auto;padding:0 1rem;line-height:1.5">
<h1>The application did not answer in time</h1>
<p>It may be busy. Please try again in a minute. If this keeps happening, tell your administrator.</p>
<p lang="nl">De applicatie gaf niet op tijd antwoord; misschien is het druk. Probeer het over een minuut opnieuw. Blijft dit gebeuren, meld het dan bij uw beheerder.</p>
</body></html>
"#;

pub const BAD_REQUEST: &str = r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>Bad request</title></head>
<body style="font-family:system-ui,sans-serif;max-width:36rem;margin:3rem auto;padding:0 1rem;line-height:1.5">
<h1>This request cannot be handled</h1>
<p>The request was malformed and was not passed on. Reload the page; if this keeps happening, tell your administrator.</p>
<p lang="nl">Dit verzoek is onjuist opgebouwd en is niet doorgegeven. Laad de pagina opnieuw; blijft dit gebeuren, meld het dan bij uw beheerder.</p>
</body></html>
"#;

/// The JSON body of a 401 for a non-browser client.
pub fn unauthorized_json(login_url: &str) -> String {
    serde_json::json!({
        "error": "unauthorized",
        "message": "sign in first, or present a valid certgate device certificate",
        "login_url": login_url,
    })
    .to_string()
}
