//! What the portal's page handlers take from a request before they start (the [`Visit`], the
//! [`Backends`], a [`Posted`] form whose CSRF token matched its session), and [`PageError`],
//! the one error their pages fail with: each handler extracts, calls and renders, and every
//! refusal becomes its page or redirect here.

use std::convert::Infallible;
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::rejection::FormRejection;
use axum::extract::{Form, FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use certgate_db::Database;
use certgate_policies::Organisation;
use certgate_store::Store;
use serde::de::DeserializeOwned;
use serde::Deserialize;

use crate::flow::{load_attempt, Attempt};
use crate::i18n::fill;
use crate::pages::{self, Chrome};
use crate::signin::LoginSession;
use crate::{PortalState, Visit};

impl FromRequestParts<Arc<PortalState>> for Visit {
    type Rejection = Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<PortalState>,
    ) -> Result<Self, Infallible> {
        Ok(Visit::new(state, &parts.headers).at(&parts.method, &parts.uri))
    }
}

/// The visit with the store and the database; while either is not open, the "try again" page.
pub(crate) struct Backends {
    pub visit: Visit,
    pub store: Store,
    pub db: Database,
}

impl Backends {
    /// For a handler that must look at the visit first (a page that is off on this host says
    /// so even while the store is down).
    pub(crate) fn of(state: &PortalState, visit: Visit) -> Result<Backends, PageError> {
        match (state.backend.store(), state.backend.database()) {
            (Some(store), Some(db)) => Ok(Backends { visit, store, db }),
            _ => Err(PageError::unavailable(&visit)),
        }
    }
}

impl FromRequestParts<Arc<PortalState>> for Backends {
    type Rejection = PageError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<PortalState>,
    ) -> Result<Self, PageError> {
        Backends::of(
            state,
            Visit::new(state, &parts.headers).at(&parts.method, &parts.uri),
        )
    }
}

/// A page's request: the backends and what the page needs beyond them (`it`: who the user is,
/// the admin, the sign-in in progress), each refusal its page.
pub(crate) struct Page<T> {
    pub visit: Visit,
    pub store: Store,
    pub db: Database,
    pub it: T,
}

/// What a page loads beyond the backends, from the request's headers (its cookies).
pub(crate) trait FromPage: Sized {
    fn load(
        state: &PortalState,
        backends: &Backends,
        headers: &HeaderMap,
    ) -> impl std::future::Future<Output = Result<Self, PageError>> + Send;
}

impl<T: FromPage> FromRequestParts<Arc<PortalState>> for Page<T> {
    type Rejection = PageError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<PortalState>,
    ) -> Result<Self, PageError> {
        let backends = Backends::from_request_parts(parts, state).await?;
        let it = T::load(state, &backends, &parts.headers).await?;
        let Backends { visit, store, db } = backends;
        Ok(Page {
            visit,
            store,
            db,
            it,
        })
    }
}

/// A form posted from a page of this browser's sign-in session: the page's request and the
/// form's fields (`form`), its CSRF token checked against the session's before the handler
/// runs. A form with another token (forged, or from an expired page) goes where `T` says; one
/// that cannot be read at all is axum's answer.
pub(crate) struct Posted<T, F> {
    pub visit: Visit,
    pub store: Store,
    pub db: Database,
    pub it: T,
    pub form: F,
}

/// What a form is posted in: the session whose CSRF token the form must carry, and where a
/// form without it goes.
pub(crate) trait PostedIn: FromPage {
    fn session(&self) -> &LoginSession;
    fn refused() -> PageError;
}

/// A form's fields and, beside them, the `csrf` every form of the portal carries.
#[derive(Deserialize)]
struct WithCsrf<F> {
    #[serde(default)]
    csrf: String,
    #[serde(flatten)]
    fields: F,
}

impl<T, F> FromRequest<Arc<PortalState>> for Posted<T, F>
where
    T: PostedIn + Send,
    F: DeserializeOwned + Send,
{
    type Rejection = PageError;

    async fn from_request(request: Request, state: &Arc<PortalState>) -> Result<Self, PageError> {
        let (mut parts, body) = request.into_parts();
        let Page {
            visit,
            store,
            db,
            it,
        } = Page::<T>::from_request_parts(&mut parts, state).await?;
        let Form(WithCsrf { csrf, fields }) =
            Form::<WithCsrf<F>>::from_request(Request::from_parts(parts, body), state)
                .await
                .map_err(PageError::Form)?;
        if !it.session().csrf_ok(&csrf) {
            return Err(T::refused());
        }
        Ok(Posted {
            visit,
            store,
            db,
            it,
            form: fields,
        })
    }
}

/// This browser's sign-in session (its cookie), for a form posted in it before anyone has
/// signed in. A form without one goes to `B::TO`, as one with another CSRF token does.
pub(crate) struct InSession<B> {
    pub attempt: Attempt,
    back: PhantomData<B>,
}

/// Where a form posted in a sign-in session goes when it does not belong to one.
pub(crate) trait Back: Send + Sync {
    const TO: &'static str;
}

impl<B: Back> FromPage for InSession<B> {
    async fn load(
        _: &PortalState,
        backends: &Backends,
        headers: &HeaderMap,
    ) -> Result<Self, PageError> {
        match load_attempt(&backends.store, headers).await {
            Some(attempt) => Ok(InSession {
                attempt,
                back: PhantomData,
            }),
            None => Err(Self::refused()),
        }
    }
}

impl<B: Back> PostedIn for InSession<B> {
    fn session(&self) -> &LoginSession {
        &self.attempt.session
    }

    fn refused() -> PageError {
        PageError::redirect(B::TO)
    }
}

/// Why a page is not shown. The pages carry the chrome (language, organisation) of the visit
/// they refuse.
pub(crate) enum PageError {
    /// The store or the database is not open or does not answer, or something else failed on
    /// our side: "try again" (503), never the error itself.
    Unavailable(Chrome),
    /// The address started too many sign-ins (`limits.sign_in_starts_per_ip`): "wait" (429,
    /// with `Retry-After`).
    TooManyStarts { chrome: Chrome, wait: Duration },
    /// Signed in, but not an admin of the organisation (403).
    Forbidden(Chrome),
    /// On the admin pages: no such account, device or action in the admin's organisation
    /// (404).
    NotFound(Chrome),
    /// Not signed in, or not recently enough: to the sign-in page, and back to this path after.
    SignInFirst(String),
    /// Not for this page now (an expired form, a step out of order): to this path instead.
    Redirect(String),
    /// A posted form that cannot be read (not a form, not UTF-8): axum's answer (415, 422).
    Form(FormRejection),
}

impl PageError {
    /// "Try again", under the host's organisation when it serves one.
    pub(crate) fn unavailable(visit: &Visit) -> Self {
        PageError::Unavailable(visit.chrome(visit.single_org().map(|o| o.as_ref())))
    }

    /// "Try again", under `org`.
    pub(crate) fn unavailable_in(visit: &Visit, org: &Organisation) -> Self {
        PageError::Unavailable(visit.chrome(Some(org)))
    }

    pub(crate) fn redirect(to: &str) -> Self {
        PageError::Redirect(to.to_owned())
    }

    pub(crate) fn sign_in_first(back: &str) -> Self {
        PageError::SignInFirst(back.to_owned())
    }
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        match self {
            PageError::Unavailable(c) => pages::notice(
                StatusCode::SERVICE_UNAVAILABLE,
                &c,
                c.t.sign_in,
                c.t.trouble,
                true,
                Some(("/.certgate/login", c.t.sign_in)),
            ),
            PageError::TooManyStarts { chrome: c, wait } => {
                let text = fill(c.t.too_many, "", &c.t.duration(wait), "");
                let mut page = pages::notice(
                    StatusCode::TOO_MANY_REQUESTS,
                    &c,
                    c.t.sign_in,
                    &text,
                    true,
                    None,
                );
                page.headers_mut().insert(
                    header::RETRY_AFTER,
                    HeaderValue::from(wait.as_secs().max(1)),
                );
                page
            }
            PageError::Forbidden(c) => pages::notice(
                StatusCode::FORBIDDEN,
                &c,
                c.t.admin_heading,
                c.t.admin_only,
                true,
                None,
            ),
            PageError::NotFound(c) => pages::notice(
                StatusCode::NOT_FOUND,
                &c,
                c.t.admin_heading,
                c.t.not_found,
                true,
                Some(("/.certgate/admin", c.t.admin_accounts)),
            ),
            PageError::SignInFirst(back) => Redirect::to(&format!(
                "/.certgate/login?return_to={}",
                percent_encoding::utf8_percent_encode(&back, percent_encoding::NON_ALPHANUMERIC)
            ))
            .into_response(),
            PageError::Redirect(to) => Redirect::to(&to).into_response(),
            PageError::Form(rejection) => rejection.into_response(),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::i18n::EN;

    fn chrome() -> Chrome {
        Chrome {
            t: &EN,
            org_name: "Zorggroep Noord".into(),
            logo: false,
            other_language: ("nl", "Nederlands"),
            language_href: "/.certgate/language?to=nl&back=%2F".into(),
        }
    }

    #[test]
    fn each_refusal_has_its_status_and_destination() {
        for (refused, status, location) in [
            (
                PageError::Unavailable(chrome()),
                StatusCode::SERVICE_UNAVAILABLE,
                None,
            ),
            (PageError::Forbidden(chrome()), StatusCode::FORBIDDEN, None),
            (PageError::NotFound(chrome()), StatusCode::NOT_FOUND, None),
            (
                PageError::sign_in_first("/.certgate/admin/accounts/a1"),
                StatusCode::SEE_OTHER,
                Some("/.certgate/login?return_to=%2F%2Ecertgate%2Fadmin%2Faccounts%2Fa1"),
            ),
            (
                PageError::redirect("/.certgate/device"),
                StatusCode::SEE_OTHER,
                Some("/.certgate/device"),
            ),
        ] {
            let response = refused.into_response();
            assert_eq!(response.status(), status);
            assert_eq!(
                response
                    .headers()
                    .get(header::LOCATION)
                    .map(|l| l.to_str().unwrap()),
                location
            );
            if location.is_none() {
                assert_eq!(response.headers()[header::CACHE_CONTROL], "no-store");
            }
        }
    }

    #[derive(Debug, PartialEq, Deserialize)]
    struct Fields {
        #[serde(default)]
        code: String,
        #[serde(default)]
        trust: Option<String>,
    }

    async fn read<F: DeserializeOwned>(
        content_type: &str,
        body: &'static str,
    ) -> Result<WithCsrf<F>, FormRejection> {
        let request = Request::post("/")
            .header(header::CONTENT_TYPE, content_type)
            .body(axum::body::Body::from(body))
            .unwrap();
        Form::<WithCsrf<F>>::from_request(request, &())
            .await
            .map(|Form(form)| form)
    }

    const FORM: &str = "application/x-www-form-urlencoded";

    #[tokio::test]
    async fn a_form_carries_its_csrf_token_beside_its_fields() {
        let posted = read::<Fields>(FORM, "code=AB-CD&csrf=t0k3n&trust=on")
            .await
            .unwrap();
        assert_eq!(posted.csrf, "t0k3n");
        assert_eq!(
            posted.fields,
            Fields {
                code: "AB-CD".into(),
                trust: Some("on".into())
            }
        );
        // Without a token: an empty one, which no session's matches.
        let posted = read::<Fields>(FORM, "code=AB-CD").await.unwrap();
        assert_eq!(posted.csrf, "");
        assert_eq!(posted.fields.trust, None);
        // A form that is only its button.
        let posted = read::<crate::account::Button>(FORM, "csrf=t0k3n")
            .await
            .unwrap();
        assert_eq!(posted.csrf, "t0k3n");
    }

    #[tokio::test]
    async fn a_body_that_is_no_form_is_axums_answer() {
        let Err(refused) = read::<Fields>("application/json", "{}").await else {
            panic!("a JSON body read as a form");
        };
        assert_eq!(
            PageError::Form(refused).into_response().status(),
            StatusCode::UNSUPPORTED_MEDIA_TYPE
        );
    }

    #[test]
    fn too_many_starts_says_when_to_come_back() {
        for (wait, after) in [(Duration::ZERO, "1"), (Duration::from_secs(90), "90")] {
            let response = PageError::TooManyStarts {
                chrome: chrome(),
                wait,
            }
            .into_response();
            assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
            assert_eq!(response.headers()[header::RETRY_AFTER], after);
        }
    }
}
