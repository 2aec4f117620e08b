#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::*;
use certgate_db::MAX_ROLES;

fn new_account(username: &str, display_name: &str) -> NewAccountBody {
    NewAccountBody {
        username: username.into(),
        display_name: display_name.into(),
        email: None,
        mobile: None,
        kind: None,
        roles: Vec::new(),
    }
}

#[test]
fn new_accounts_are_checked_as_the_openapi_document_says() {
    let made = NewAccountBody {
        email: Some("Eva@Noord.Example".into()),
        mobile: Some("+31612345678".into()),
        kind: Some("group".into()),
        roles: vec!["admin".into(), "night_shift-2".into()],
        ..new_account("Eva@noord.example", "Eva de Boer")
    }
    .checked("noord")
    .unwrap();
    assert_eq!(made.org, "noord");
    assert_eq!(made.kind, certgate_db::AccountKind::Group);

    for (bad, why) in [
        (new_account("", "Eva"), "user name"),
        (new_account("eva boer", "Eva"), "user name"),
        (new_account("évá", "Eva"), "user name"),
        (new_account(&"e".repeat(65), "Eva"), "user name"),
        (new_account("eva", ""), "display name"),
        (new_account("eva", " Eva"), "display name"),
        (new_account("eva", "Eva\u{3000}"), "display name"),
        (new_account("eva", "Eva\nde Boer"), "display name"),
        (new_account("eva", &"E".repeat(101)), "display name"),
        (
            NewAccountBody {
                email: Some(String::new()),
                ..new_account("eva", "Eva")
            },
            "e-mail",
        ),
        (
            NewAccountBody {
                email: Some("eva@localhost".into()),
                ..new_account("eva", "Eva")
            },
            "e-mail",
        ),
        (
            NewAccountBody {
                email: Some("eva@.example".into()),
                ..new_account("eva", "Eva")
            },
            "e-mail",
        ),
        (
            NewAccountBody {
                email: Some("eva@a@b.example".into()),
                ..new_account("eva", "Eva")
            },
            "e-mail",
        ),
        (
            NewAccountBody {
                mobile: Some(" +31612345678".into()),
                ..new_account("eva", "Eva")
            },
            "mobile",
        ),
        (
            NewAccountBody {
                kind: Some("robot".into()),
                ..new_account("eva", "Eva")
            },
            "kind",
        ),
        (
            NewAccountBody {
                roles: vec!["night shift".into()],
                ..new_account("eva", "Eva")
            },
            "role",
        ),
        (
            NewAccountBody {
                roles: vec!["r".into(); MAX_ROLES + 1],
                ..new_account("eva", "Eva")
            },
            "roles",
        ),
    ] {
        let message = bad.checked("noord").unwrap_err().0;
        assert!(message.contains(why), "{why}: {message}");
    }
    // Inside, a display name may hold any printable character, spaces included.
    assert!(new_account("eva", "Eva\u{a0}de\u{2003}Boer ☕")
        .checked("noord")
        .is_ok());
}

#[test]
fn bodies_with_unknown_fields_are_refused() {
    let body: Result<NewAccountBody, _> = json_body(Ok(Bytes::from(
        r#"{"username":"a","display_name":"A","admin":true}"#,
    )));
    assert!(matches!(body, Err(ApiError::BadRequest(m)) if m.contains("unknown field")));
    let empty: Result<NewAccountBody, _> = json_body(Ok(Bytes::new()));
    assert!(matches!(empty, Err(ApiError::BadRequest(_))));
}

#[test]
fn bearer_tokens_are_read_from_the_authorization_header() {
    let mut headers = HeaderMap::new();
    assert_eq!(bearer(&headers), None);
    headers.insert(header::AUTHORIZATION, "Basic YTpi".parse().unwrap());
    assert_eq!(bearer(&headers), None);
    headers.insert(header::AUTHORIZATION, "bearer  cgt_abc ".parse().unwrap());
    assert_eq!(bearer(&headers), Some("cgt_abc"));
}

#[test]
fn errors_are_json_with_the_right_status_and_challenge() {
    let response = ApiError::InsufficientScope(ApiScope::AccountsWrite).into_response();
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    assert_eq!(
        response.headers()[header::WWW_AUTHENTICATE],
        "Bearer realm=\"certgate\", error=\"insufficient_scope\", scope=\"accounts:write\""
    );
    assert_eq!(response.headers()[header::CACHE_CONTROL], "no-store");
    let response = ApiError::InvalidToken("the token has expired").into_response();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    for (error, status) in [
        (ApiError::BadRequest("x".into()), 400),
        (ApiError::SourceNotAllowed, 403),
        (ApiError::NotFound, 404),
        (ApiError::Conflict("x".into()), 409),
        (ApiError::Unavailable, 503),
    ] {
        assert_eq!(error.into_response().status().as_u16(), status);
    }
}

/// Every route of the API is in the OpenAPI document, and the document lists no other.
#[test]
fn the_openapi_document_describes_the_routes() {
    let doc: Value = serde_json::from_str(OPENAPI).unwrap();
    assert_eq!(doc["openapi"], "3.1.0");
    assert_eq!(doc["servers"][0]["url"], "/.certgate/api/v1");
    let mut documented: Vec<String> = doc["paths"]
        .as_object()
        .unwrap()
        .iter()
        .flat_map(|(path, ops)| {
            ops.as_object()
                .unwrap()
                .keys()
                .map(move |method| format!("{} {path}", method.to_uppercase()))
        })
        .collect();
    documented.sort();
    let mut served = vec![
        "GET /admin/tokens",
        "POST /admin/tokens",
        "POST /admin/tokens/{id}/revoke",
        "GET /admin/accounts",
        "POST /admin/accounts",
        "GET /admin/accounts/{id}",
        "POST /admin/accounts/{id}/disable",
        "POST /admin/accounts/{id}/enable",
        "POST /admin/accounts/{id}/reset-mfa",
        "GET /admin/accounts/{id}/devices",
        "POST /admin/devices/{id}/revoke",
        "GET /admin/audit",
    ];
    served.sort();
    assert_eq!(documented, served);
    let scopes: Vec<&str> = doc["components"]["schemas"]["Scope"]["enum"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap())
        .collect();
    assert_eq!(scopes, ApiScope::ALL.map(ApiScope::as_str));
}
