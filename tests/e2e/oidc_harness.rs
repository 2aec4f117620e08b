//! The OpenID Connect providers the single sign-on tests stand on, checked with curl alone:
//! discovery and an authorization code flow with PKCE against each; the real provider's sign-in
//! page, `amr`, key rotation and its tenant issuers (`<issuer>/<tenant>/v2.0`, as Entra ID's);
//! the forge's checks and its one-token spec.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::path::Path;
use std::process::Command;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use certgate_e2e::{attribute_after, ForgeProvider, OidcProvider, Response};
use serde_json::{json, Value};

const CLIENT: &str = "certgate-portal";
const SECRET: &str = "client secret: with spaces & symbols";
/// Nothing listens here: a flow ends when the provider redirects to it.
const REDIRECT_URI: &str = "http://127.0.0.1:9/.certgate/sso/callback";

#[test]
fn real_provider_signs_in_with_pkce_puts_amr_in_the_id_token_and_rotates_keys() {
    let op = OidcProvider::start();
    op.add_client(CLIENT, SECRET, REDIRECT_URI);
    op.set_account(
        "alice",
        json!({
            "sub": "alice-0001",
            "email": "alice@example.com",
            "email_verified": true,
            "name": "Alice Example",
            "hd": "example.com",
            "oid": "9f3c1d2e-0000-4000-8000-000000000001",
            "amr": ["pwd", "mfa"],
        }),
    );
    let discovery = get_json(&format!("{}/.well-known/openid-configuration", op.issuer()));
    assert_eq!(discovery["issuer"], op.issuer());
    assert_eq!(
        discovery["code_challenge_methods_supported"],
        json!(["S256"])
    );
    for method in ["client_secret_basic", "client_secret_post"] {
        assert!(
            strings(&discovery["token_endpoint_auth_methods_supported"]).contains(&method.into()),
            "{discovery}"
        );
    }

    let dir = tempfile::tempdir().unwrap();
    let jar = dir.path().join("cookies");
    let pkce = Pkce::new();
    let first = authorize(&jar, &discovery, "state-1", "nonce-1", Some(&pkce));
    assert_eq!(first.status, 303, "{first:?}\n{}", op.log_text());
    assert!(
        first.header("location").unwrap().contains("/interaction/"),
        "{first:?}"
    );
    let callback = follow_to_client(&jar, &op.issuer(), first, "alice");
    assert_eq!(callback.get("state").map(String::as_str), Some("state-1"));
    assert_eq!(callback.get("iss"), Some(&op.issuer()));
    let tokens = exchange(
        &discovery,
        &callback["code"],
        &pkce.verifier,
        ClientAuth::Basic,
    );
    assert_eq!(tokens.status, 200, "{tokens:?}\n{}", op.log_text());
    let id_token = IdToken::decode(tokens.json()["id_token"].as_str().unwrap());
    let claims = &id_token.claims;
    assert_eq!(claims["iss"], op.issuer());
    assert_eq!(claims["aud"], CLIENT);
    assert_eq!(claims["nonce"], "nonce-1");
    assert_eq!(claims["sub"], "alice-0001");
    assert_eq!(claims["email"], "alice@example.com");
    assert_eq!(claims["email_verified"], true);
    assert_eq!(claims["name"], "Alice Example");
    assert_eq!(claims["hd"], "example.com");
    assert_eq!(claims["oid"], "9f3c1d2e-0000-4000-8000-000000000001");
    assert_eq!(claims["amr"], json!(["pwd", "mfa"]));
    let jwks_uri = discovery["jwks_uri"].as_str().unwrap();
    assert!(id_token.verifies_with(&get_json(jwks_uri)), "{id_token:?}");
    let old_kid = id_token.header["kid"].as_str().unwrap().to_owned();

    let new_kid = op.rotate_keys();
    assert_ne!(new_kid, old_kid);
    let jwks = get_json(jwks_uri);
    assert_eq!(kids(&jwks), vec![new_kid.clone()], "the old key is gone");

    // The provider session from the first sign-in carries the second flow without a page.
    let pkce = Pkce::new();
    let first = authorize(&jar, &discovery, "state-2", "nonce-2", Some(&pkce));
    assert!(
        first.header("location").unwrap().starts_with(REDIRECT_URI),
        "{first:?}"
    );
    let callback = follow_to_client(&jar, &op.issuer(), first, "alice");
    let tokens = exchange(
        &discovery,
        &callback["code"],
        &pkce.verifier,
        ClientAuth::Post,
    );
    assert_eq!(tokens.status, 200, "{tokens:?}\n{}", op.log_text());
    let id_token = IdToken::decode(tokens.json()["id_token"].as_str().unwrap());
    assert_eq!(id_token.header["kid"], new_kid.as_str());
    assert!(id_token.verifies_with(&jwks), "{id_token:?}");
    assert_eq!(id_token.claims["nonce"], "nonce-2");
    assert_eq!(id_token.claims["amr"], json!(["pwd", "mfa"]));

    op.sign_out_everyone();
    let again = authorize(&jar, &discovery, "state-3", "nonce-3", Some(&Pkce::new()));
    assert!(
        again.header("location").unwrap().contains("/interaction/"),
        "the sign-in page again: {again:?}"
    );
}

#[test]
fn real_provider_requires_pkce_rejects_unknown_names_and_cancels_with_access_denied() {
    let op = OidcProvider::start();
    op.add_client(CLIENT, SECRET, REDIRECT_URI);
    op.set_account(
        "bob",
        json!({ "email": "bob@example.com", "email_verified": false }),
    );
    let discovery = get_json(&format!("{}/.well-known/openid-configuration", op.issuer()));
    let dir = tempfile::tempdir().unwrap();
    let jar = dir.path().join("cookies");

    let without_pkce = authorize(&jar, &discovery, "state-0", "nonce-0", None);
    let callback = query_of(&without_pkce.header("location").unwrap());
    assert_eq!(callback["error"], "invalid_request", "{without_pkce:?}");

    let first = authorize(&jar, &discovery, "state-1", "nonce-1", Some(&Pkce::new()));
    let page = curl(&jar, &absolute(&op.issuer(), &first), &[]);
    assert_eq!(page.status, 200, "{page:?}");
    assert!(page.body.contains(r#"name="login""#), "{}", page.body);
    assert!(page.body.contains(">Sign in</button>"), "{}", page.body);
    assert!(page.body.contains(">Cancel</button>"), "{}", page.body);
    let action = attribute_after(&page.body, r#"<form method="post" action=""#).unwrap();
    let again = curl(
        &jar,
        &format!("{}{action}", op.issuer()),
        &["--data-urlencode", "login=mallory"],
    );
    assert_eq!(again.status, 200, "{again:?}");
    assert!(
        again.body.contains("Unknown login name “mallory”."),
        "{}",
        again.body
    );
    assert!(again.body.contains(r#"name="login""#), "the form again");

    let cancel = attribute_after(&again.body, r#"formaction=""#).unwrap();
    let cancelled = curl(&jar, &format!("{}{cancel}", op.issuer()), &["-d", ""]);
    let callback = follow_to_client(&jar, &op.issuer(), cancelled, "unused");
    assert_eq!(callback["error"], "access_denied", "{callback:?}");
    assert_eq!(callback["state"], "state-1");

    // `sub` defaults to the login name; `email_verified: false` stays false.
    let pkce = Pkce::new();
    let first = authorize(&jar, &discovery, "state-2", "nonce-2", Some(&pkce));
    let callback = follow_to_client(&jar, &op.issuer(), first, "bob");
    let tokens = exchange(
        &discovery,
        &callback["code"],
        &pkce.verifier,
        ClientAuth::Basic,
    );
    let claims = IdToken::decode(tokens.json()["id_token"].as_str().unwrap()).claims;
    assert_eq!(claims["sub"], "bob");
    assert_eq!(claims["email_verified"], false);
    assert!(claims.get("amr").is_none(), "{claims}");
}

#[test]
fn real_provider_serves_a_tenant_issuer_under_its_path_beside_the_root_one() {
    let op = OidcProvider::start();
    op.add_client(CLIENT, SECRET, REDIRECT_URI);
    op.set_account(
        "dana",
        json!({
            "sub": "dana-pairwise",
            "oid": "5b1e7c2a-0000-4000-8000-00000000d4a4",
            "tid": "0f2a6c1e-1234-4a5b-9c8d-00112233aabb",
            "email": "dana@example.com",
            "xms_edov": true,
        }),
    );
    let tenant = format!("{}/0f2a6c1e-1234-4a5b-9c8d-00112233aabb/v2.0", op.issuer());
    let discovery = get_json(&format!("{tenant}/.well-known/openid-configuration"));
    assert_eq!(discovery["issuer"], tenant.as_str());
    for endpoint in ["authorization_endpoint", "token_endpoint", "jwks_uri"] {
        assert!(
            discovery[endpoint]
                .as_str()
                .unwrap()
                .starts_with(&format!("{tenant}/")),
            "{endpoint} under the tenant: {discovery}"
        );
    }

    let dir = tempfile::tempdir().unwrap();
    let jar = dir.path().join("cookies");
    let pkce = Pkce::new();
    let first = authorize(&jar, &discovery, "state-t", "nonce-t", Some(&pkce));
    assert_eq!(first.status, 303, "{first:?}\n{}", op.log_text());
    let page = first.header("location").unwrap();
    assert!(
        page.starts_with("/0f2a6c1e-1234-4a5b-9c8d-00112233aabb/v2.0/interaction/"),
        "the sign-in page under the tenant: {first:?}"
    );
    // Locations and the form's action are paths from the host's root.
    let callback = follow_to_client(&jar, &op.issuer(), first, "dana");
    assert_eq!(callback.get("iss"), Some(&tenant));
    let tokens = exchange(
        &discovery,
        &callback["code"],
        &pkce.verifier,
        ClientAuth::Basic,
    );
    assert_eq!(tokens.status, 200, "{tokens:?}\n{}", op.log_text());
    let id_token = IdToken::decode(tokens.json()["id_token"].as_str().unwrap());
    let claims = &id_token.claims;
    assert_eq!(claims["iss"], tenant.as_str());
    assert_eq!(claims["sub"], "dana-pairwise");
    assert_eq!(claims["oid"], "5b1e7c2a-0000-4000-8000-00000000d4a4");
    assert_eq!(claims["tid"], "0f2a6c1e-1234-4a5b-9c8d-00112233aabb");
    assert_eq!(claims["xms_edov"], true);
    assert_eq!(claims["nonce"], "nonce-t");
    assert!(
        id_token.verifies_with(&get_json(discovery["jwks_uri"].as_str().unwrap())),
        "{id_token:?}"
    );

    // The root issuer is still there, and another tenant has its own.
    let root = get_json(&format!("{}/.well-known/openid-configuration", op.issuer()));
    assert_eq!(root["issuer"], op.issuer());
    let other = format!("{}/7d9e0b1c-5678-4c3d-8e9f-445566778899/v2.0", op.issuer());
    let discovery = get_json(&format!("{other}/.well-known/openid-configuration"));
    assert_eq!(discovery["issuer"], other.as_str());
}

#[test]
fn forge_checks_secret_and_pkce_and_bends_only_the_next_token() {
    let forge = ForgeProvider::start();
    forge.add_client(CLIENT, SECRET, REDIRECT_URI);
    forge.set_claims(
        json!({ "sub": "carol-7", "email": "carol@example.com", "email_verified": true }),
    );
    let discovery = get_json(&format!(
        "{}/.well-known/openid-configuration",
        forge.issuer()
    ));
    assert_eq!(discovery["issuer"], forge.issuer());
    let jwks = get_json(discovery["jwks_uri"].as_str().unwrap());
    let dir = tempfile::tempdir().unwrap();
    let jar = dir.path().join("cookies");

    forge.next_token(json!({ "claims": { "aud": "someone-else" } }));
    let pkce = Pkce::new();
    let code = forge_code(&jar, &discovery, "nonce-1", &pkce);
    let wrong_verifier = exchange(&discovery, &code, &Pkce::new().verifier, ClientAuth::Basic);
    assert_eq!(wrong_verifier.status, 400, "{wrong_verifier:?}");
    assert_eq!(wrong_verifier.json()["error"], "invalid_grant");
    let wrong_secret = curl(
        &jar,
        discovery["token_endpoint"].as_str().unwrap(),
        &[
            "-u",
            &format!("{CLIENT}:not-the-secret"),
            "--data-urlencode",
            "grant_type=authorization_code",
            "--data-urlencode",
            &format!("code={code}"),
            "--data-urlencode",
            &format!("redirect_uri={REDIRECT_URI}"),
            "--data-urlencode",
            &format!("code_verifier={}", pkce.verifier),
        ],
    );
    assert_eq!(wrong_secret.status, 401, "{wrong_secret:?}");
    assert_eq!(wrong_secret.json()["error"], "invalid_client");
    let tokens = exchange(&discovery, &code, &pkce.verifier, ClientAuth::Basic);
    assert_eq!(tokens.status, 200, "{tokens:?}\n{}", forge.log_text());
    let bent = IdToken::decode(tokens.json()["id_token"].as_str().unwrap());
    assert_eq!(bent.claims["aud"], "someone-else");
    assert_eq!(bent.claims["iss"], forge.issuer());
    assert_eq!(bent.claims["nonce"], "nonce-1");
    assert_eq!(bent.claims["sub"], "carol-7");
    assert_eq!(bent.claims["email"], "carol@example.com");
    assert_eq!(bent.claims["email_verified"], true);
    assert_eq!(
        bent.claims["exp"].as_i64().unwrap() - bent.claims["iat"].as_i64().unwrap(),
        300
    );
    assert!(bent.verifies_with(&jwks), "{bent:?}");
    let used_code = exchange(&discovery, &code, &pkce.verifier, ClientAuth::Basic);
    assert_eq!(
        used_code.json()["error"],
        "invalid_grant",
        "codes are single-use"
    );

    let pkce = Pkce::new();
    let code = forge_code(&jar, &discovery, "nonce-2", &pkce);
    let tokens = exchange(&discovery, &code, &pkce.verifier, ClientAuth::Post);
    let normal = IdToken::decode(tokens.json()["id_token"].as_str().unwrap());
    assert_eq!(normal.claims["aud"], CLIENT, "the spec applied once");
    assert_eq!(normal.claims["nonce"], "nonce-2");
    assert!(normal.verifies_with(&jwks));

    forge.next_token(json!({
        "sign_with_other_key": true,
        "claims": { "nonce": null, "email": "x@evil.example", "email_verified": false },
    }));
    let pkce = Pkce::new();
    let code = forge_code(&jar, &discovery, "nonce-3", &pkce);
    let tokens = exchange(&discovery, &code, &pkce.verifier, ClientAuth::Basic);
    let forged = IdToken::decode(tokens.json()["id_token"].as_str().unwrap());
    assert_eq!(forged.header["kid"], normal.header["kid"], "a listed kid");
    assert!(!forged.verifies_with(&jwks), "signed with another key");
    assert!(forged.claims.get("nonce").is_none(), "{forged:?}");
    assert_eq!(forged.claims["email"], "x@evil.example");
    assert_eq!(forged.claims["email_verified"], false);

    forge.next_token(json!({ "kid": "unknown-kid" }));
    let pkce = Pkce::new();
    let code = forge_code(&jar, &discovery, "nonce-4", &pkce);
    let tokens = exchange(&discovery, &code, &pkce.verifier, ClientAuth::Basic);
    let unknown = IdToken::decode(tokens.json()["id_token"].as_str().unwrap());
    assert_eq!(unknown.header["kid"], "unknown-kid");
    assert!(!kids(&jwks).contains(&"unknown-kid".to_owned()));
}

/// A PKCE pair: a random verifier and its S256 challenge.
struct Pkce {
    verifier: String,
    challenge: String,
}

impl Pkce {
    fn new() -> Pkce {
        use ring::rand::SecureRandom;
        let mut random = [0u8; 32];
        ring::rand::SystemRandom::new().fill(&mut random).unwrap();
        let verifier = URL_SAFE_NO_PAD.encode(random);
        let digest = ring::digest::digest(&ring::digest::SHA256, verifier.as_bytes());
        Pkce {
            challenge: URL_SAFE_NO_PAD.encode(digest),
            verifier,
        }
    }
}

/// An ID token taken apart, unverified.
#[derive(Debug)]
struct IdToken {
    header: Value,
    claims: Value,
    signing_input: String,
    signature: Vec<u8>,
}

impl IdToken {
    fn decode(jwt: &str) -> IdToken {
        let parts: Vec<&str> = jwt.split('.').collect();
        assert_eq!(parts.len(), 3, "not a JWS: {jwt}");
        let json = |part: &str| -> Value {
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).unwrap()).unwrap()
        };
        IdToken {
            header: json(parts[0]),
            claims: json(parts[1]),
            signing_input: format!("{}.{}", parts[0], parts[1]),
            signature: URL_SAFE_NO_PAD.decode(parts[2]).unwrap(),
        }
    }

    /// Whether the JWKS key with the header's `kid` verifies the RS256 signature.
    fn verifies_with(&self, jwks: &Value) -> bool {
        let Some(key) = jwks["keys"]
            .as_array()
            .unwrap()
            .iter()
            .find(|key| key["kid"] == self.header["kid"])
        else {
            return false;
        };
        let component = |name: &str| URL_SAFE_NO_PAD.decode(key[name].as_str().unwrap()).unwrap();
        self.header["alg"] == "RS256"
            && ring::signature::RsaPublicKeyComponents {
                n: component("n"),
                e: component("e"),
            }
            .verify(
                &ring::signature::RSA_PKCS1_2048_8192_SHA256,
                self.signing_input.as_bytes(),
                &self.signature,
            )
            .is_ok()
    }
}

/// curl without following redirects, keeping cookies in `jar`; `args` go before the URL.
fn curl(jar: &Path, url: &str, args: &[&str]) -> Response {
    let work = tempfile::tempdir().unwrap();
    let (headers, body) = (work.path().join("h"), work.path().join("b"));
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "10", "-b"])
        .arg(jar)
        .arg("-c")
        .arg(jar)
        .arg("-D")
        .arg(&headers)
        .arg("-o")
        .arg(&body)
        .args(["-w", "%{http_code}"])
        .args(args)
        .arg(url)
        .output()
        .expect("run curl");
    Response {
        status: String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .unwrap_or(0),
        headers: std::fs::read_to_string(&headers).unwrap_or_default(),
        body: std::fs::read_to_string(&body).unwrap_or_default(),
        exit: out.status.code().unwrap_or(-1),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn get_json(url: &str) -> Value {
    let jar = tempfile::tempdir().unwrap();
    let response = curl(&jar.path().join("cookies"), url, &[]);
    assert_eq!(response.status, 200, "{url}: {response:?}");
    response.json()
}

/// The authorization request, as the portal's redirect would make the browser send it.
fn authorize(
    jar: &Path,
    discovery: &Value,
    state: &str,
    nonce: &str,
    pkce: Option<&Pkce>,
) -> Response {
    let mut fields = vec![
        "response_type=code".to_owned(),
        format!("client_id={CLIENT}"),
        format!("redirect_uri={REDIRECT_URI}"),
        "scope=openid email profile".to_owned(),
        format!("state={state}"),
        format!("nonce={nonce}"),
    ];
    if let Some(pkce) = pkce {
        fields.push(format!("code_challenge={}", pkce.challenge));
        fields.push("code_challenge_method=S256".to_owned());
    }
    let mut args = vec!["-G"];
    for field in &fields {
        args.extend(["--data-urlencode", field.as_str()]);
    }
    curl(
        jar,
        discovery["authorization_endpoint"].as_str().unwrap(),
        &args,
    )
}

/// Follows the provider's redirects, signing in as `login` when its page shows, until it
/// redirects to the client; returns that redirect's query parameters.
fn follow_to_client(
    jar: &Path,
    issuer: &str,
    mut response: Response,
    login: &str,
) -> HashMap<String, String> {
    for _ in 0..10 {
        if let Some(location) = response.header("location") {
            if location.starts_with(REDIRECT_URI) {
                return query_of(&location);
            }
            response = curl(jar, &absolute(issuer, &response), &[]);
        } else {
            assert_eq!(response.status, 200, "{response:?}");
            let action =
                attribute_after(&response.body, r#"<form method="post" action=""#).unwrap();
            let field = format!("login={login}");
            response = curl(
                jar,
                &format!("{issuer}{action}"),
                &["--data-urlencode", &field],
            );
        }
    }
    panic!("no redirect to the client: {response:?}");
}

/// The forge's authorization response: straight back to the client with a code.
fn forge_code(jar: &Path, discovery: &Value, nonce: &str, pkce: &Pkce) -> String {
    let response = authorize(jar, discovery, "forge-state", nonce, Some(pkce));
    assert_eq!(response.status, 302, "{response:?}");
    let callback = query_of(&response.header("location").unwrap());
    assert_eq!(callback["state"], "forge-state");
    callback["code"].clone()
}

enum ClientAuth {
    Basic,
    Post,
}

/// The token request for `code`, authenticating the client as `auth` says.
fn exchange(discovery: &Value, code: &str, verifier: &str, auth: ClientAuth) -> Response {
    let fields = [
        "grant_type=authorization_code".to_owned(),
        format!("code={code}"),
        format!("redirect_uri={REDIRECT_URI}"),
        format!("code_verifier={verifier}"),
    ];
    // client_secret_basic form-encodes id and secret before base64 (RFC 6749 §2.3.1).
    let form = |text: &str| {
        percent_encoding::utf8_percent_encode(text, percent_encoding::NON_ALPHANUMERIC).to_string()
    };
    let basic = format!("{}:{}", form(CLIENT), form(SECRET));
    let posted = [
        format!("client_id={CLIENT}"),
        format!("client_secret={SECRET}"),
    ];
    let mut args: Vec<&str> = match auth {
        ClientAuth::Basic => vec!["-u", &basic],
        ClientAuth::Post => posted
            .iter()
            .flat_map(|field| ["--data-urlencode", field.as_str()])
            .collect(),
    };
    for field in &fields {
        args.extend(["--data-urlencode", field.as_str()]);
    }
    let jar = tempfile::tempdir().unwrap();
    curl(
        &jar.path().join("cookies"),
        discovery["token_endpoint"].as_str().unwrap(),
        &args,
    )
}

/// A redirect's `Location` made absolute against the provider.
fn absolute(issuer: &str, response: &Response) -> String {
    let location = response.header("location").unwrap();
    if location.starts_with("http") {
        location
    } else {
        format!("{issuer}{location}")
    }
}

fn query_of(url: &str) -> HashMap<String, String> {
    let query = url.split_once('?').map(|(_, q)| q).unwrap_or_default();
    query
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .map(|(k, v)| {
            let decode = |s: &str| {
                percent_encoding::percent_decode_str(&s.replace('+', " "))
                    .decode_utf8_lossy()
                    .into_owned()
            };
            (decode(k), decode(v))
        })
        .collect()
}

fn kids(jwks: &Value) -> Vec<String> {
    jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|key| key["kid"].as_str().map(str::to_owned))
        .collect()
}

fn strings(value: &Value) -> Vec<String> {
    value
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|v| v.as_str().map(str::to_owned))
        .collect()
}
