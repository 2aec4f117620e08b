//! Entry points for the fuzz targets in `fuzz/`: what the portal reads from the network, reached
//! without making its request types public. Built only with `--cfg fuzzing`.

use crate::{admin_api, device, sso};

/// The device flow's JSON bodies: `authorize`, `token`, and the CSR of `certificate`/`renew`.
pub fn device_flow(body: &[u8]) {
    let _ = serde_json::from_slice::<certgate_device_flow::AuthorizeRequest>(body);
    let _ = serde_json::from_slice::<certgate_device_flow::TokenRequest>(body);
    let _ = device::parse_csr(body);
}

/// The query of a single sign-on callback, as the provider's redirect brings it.
pub fn sso_callback(query: &str) {
    if let Ok(uri) = format!("/.certgate/sso/x/callback?{query}").parse::<axum::http::Uri>() {
        let _ = axum::extract::Query::<sso::CallbackQuery>::try_from_uri(&uri);
    }
}

/// The admin API's bodies: a new account and a new API token, checked as the handlers do.
pub fn admin_api(body: &[u8]) {
    if let Ok(account) = serde_json::from_slice::<admin_api::NewAccountBody>(body) {
        let _ = account.checked("noord");
    }
    if let Ok(token) = serde_json::from_slice::<admin_api::tokens::NewTokenBody>(body) {
        let _ = token.checked();
    }
}
