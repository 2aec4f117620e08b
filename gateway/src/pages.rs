//! The few responses the gateway writes itself: unknown host, bad request, sign-in needed,
//! upstream down.
//! Plain, bilingual, no details of the failure (those go to the log).

/// One page: the title, the heading, what to do in English and in Dutch, in the same plain frame.
macro_rules! page {
    ($title:literal, $heading:literal, $en:literal, $nl:literal) => {
        concat!(
            r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>"#,
            $title,
            r#"</title></head>
<body style="font-family:system-ui,sans-serif;max-width:36rem;margin:3rem auto;padding:0 1rem;line-height:1.5">
<h1>"#,
            $heading,
            "</h1>\n<p>",
            $en,
            "</p>\n<p lang=\"nl\">",
            $nl,
            "</p>\n</body></html>\n"
        )
    };
}

pub const UNKNOWN_HOST: &str = page!(
    "Unknown address",
    "This address is not served here",
    "The gateway does not know this web address. Check the link or ask your administrator.",
    "Dit adres is hier niet bekend. Controleer de link of vraag het uw beheerder."
);

pub const UPSTREAM_DOWN: &str = page!(
    "Application unavailable",
    "The application is not reachable right now",
    "Please try again in a few minutes. If this keeps happening, tell your administrator.",
    "De applicatie is nu niet bereikbaar. Probeer het over een paar minuten opnieuw. Blijft dit gebeuren, meld het dan bij uw beheerder."
);

pub const UPSTREAM_TIMEOUT: &str = page!(
    "Application too slow",
    "The application did not answer in time",
    "It may be busy. Please try again in a minute. If this keeps happening, tell your administrator.",
    "De applicatie gaf niet op tijd antwoord; misschien is het druk. Probeer het over een minuut opnieuw. Blijft dit gebeuren, meld het dan bij uw beheerder."
);

pub const BAD_REQUEST: &str = page!(
    "Bad request",
    "This request cannot be handled",
    "The request was malformed and was not passed on. Reload the page; if this keeps happening, tell your administrator.",
    "Dit verzoek is onjuist opgebouwd en is niet doorgegeven. Laad de pagina opnieuw; blijft dit gebeuren, meld het dan bij uw beheerder."
);

/// The JSON body of a 401 for a non-browser client.
pub fn unauthorized_json(login_url: &str) -> String {
    serde_json::json!({
        "error": "unauthorized",
        "message": "sign in first, or present a valid certgate device certificate",
        "login_url": login_url,
    })
    .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_are_whole_documents_in_both_languages() {
        for page in [UNKNOWN_HOST, UPSTREAM_DOWN, UPSTREAM_TIMEOUT, BAD_REQUEST] {
            assert!(
                page.starts_with("<!doctype html>\n<html lang=\"en\">"),
                "{page}"
            );
            assert!(page.ends_with("</body></html>\n"), "{page}");
            assert_eq!(page.matches("<p lang=\"nl\">").count(), 1, "{page}");
            assert_eq!(page.matches("<h1>").count(), 1, "{page}");
        }
        assert!(UNKNOWN_HOST.contains("<title>Unknown address</title>"));
    }
}
