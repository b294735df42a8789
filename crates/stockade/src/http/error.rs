//! One error type for every handler, rendered as `application/problem+json`
//! (RFC 9457) with a stable `code`. Internal causes are logged once, inside the
//! request span, and never sent to the client.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

pub const PROBLEM_JSON: &str = "application/problem+json";

/// The body of every error response.
#[derive(Debug, Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct Problem {
    /// `urn:stockade:problem:<code>`.
    #[serde(rename = "type")]
    pub kind: String,
    pub title: String,
    pub status: u16,
    /// Stable, machine-readable: `area.reason` (e.g. `request.malformed_json`).
    pub code: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// Itemised problems (e.g. every unmet password rule), when there are several.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub errors: Option<serde_json::Value>,
    /// `auth.step_up_required`: how old, in seconds, a password proof may
    /// be for this action (the tenant's step-up window).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_age_seconds: Option<i64>,
}

#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    detail: Option<String>,
    errors: Option<serde_json::Value>,
    max_age_seconds: Option<i64>,
    retry_after: Option<u64>,
    /// Boxed: only rate-limit refusals carry it, and it keeps `ApiError`
    /// small (clippy's `result_large_err`).
    limited: Option<Box<RateLimited>>,
}

/// On a rate-limit refusal's response (a 429 made with
/// [`ApiError::limited_by`]): which limiter refused, and the client it
/// counted against. Read by the metrics layer (`ops::http_metrics`: the
/// refusal counter by limiter, and the alert on repeated refusals of one
/// address); the address is never a metric label.
#[derive(Debug, Clone, Copy)]
pub struct RateLimited {
    pub limiter: &'static str,
    pub client: super::client_ip::LimitKey,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str) -> Self {
        Self {
            status,
            code,
            detail: None,
            errors: None,
            max_age_seconds: None,
            retry_after: None,
            limited: None,
        }
    }

    /// Names the rate limit (`limiter`, a fixed name) that refused `client`
    /// (see [`RateLimited`]).
    pub fn limited_by(mut self, limiter: &'static str, client: super::client_ip::LimitKey) -> Self {
        self.limited = Some(Box::new(RateLimited { limiter, client }));
        self
    }

    /// Adds `max_age_seconds` to the problem (the age limit a step-up
    /// refusal names).
    pub fn with_max_age_seconds(mut self, secs: i64) -> Self {
        self.max_age_seconds = Some(secs);
        self
    }

    pub fn with_errors(mut self, errors: serde_json::Value) -> Self {
        self.errors = Some(errors);
        self
    }

    /// Adds `Retry-After: secs` (429, 503).
    pub fn retry_after(mut self, secs: u64) -> Self {
        self.retry_after = Some(secs);
        self
    }

    /// 403 naming the missing permission (it is not a secret which one).
    pub fn forbidden_permission(permission: &str) -> Self {
        Self::new(StatusCode::FORBIDDEN, "rbac.forbidden")
            .with_detail(format!("missing permission `{permission}`"))
            .with_errors(serde_json::json!({ "permission": permission }))
    }

    /// 401 with `WWW-Authenticate: Bearer`; deliberately says nothing about why.
    pub fn unauthenticated() -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "auth.unauthenticated")
    }

    pub fn with_detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = Some(detail.into());
        self
    }

    pub fn bad_request(code: &'static str, detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code).with_detail(detail)
    }

    pub fn not_found() -> Self {
        Self::new(StatusCode::NOT_FOUND, "http.not_found")
    }

    /// A failure that is ours, not the client's: logged with its cause, sent
    /// as a bare 500.
    pub fn internal(cause: impl std::fmt::Display) -> Self {
        tracing::error!(error = %cause, "internal error");
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal.error")
    }

    pub fn status_code(&self) -> StatusCode {
        self.status
    }

    pub fn code(&self) -> &'static str {
        self.code
    }

    pub fn problem(&self) -> Problem {
        Problem {
            kind: format!("urn:stockade:problem:{}", self.code),
            title: self.status.canonical_reason().unwrap_or("Error").to_owned(),
            status: self.status.as_u16(),
            code: self.code.to_owned(),
            detail: self.detail.clone(),
            errors: self.errors.clone(),
            max_age_seconds: self.max_age_seconds,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::to_vec(&self.problem()).unwrap_or_default();
        let mut res = (self.status, body).into_response();
        if matches!(self.status, StatusCode::FORBIDDEN | StatusCode::NOT_FOUND) {
            // For the audit of refused authorization (`http::refusals`).
            let permission = self
                .errors
                .as_ref()
                .and_then(|e| e.get("permission"))
                .and_then(|p| p.as_str())
                .map(str::to_owned);
            res.extensions_mut().insert(super::refusals::Refusal {
                code: self.code,
                permission,
            });
        }
        let headers = res.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
        if self.status == StatusCode::UNAUTHORIZED {
            headers.insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"stockade\""),
            );
        }
        if let Some(secs) = self.retry_after {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        if let Some(limited) = self.limited {
            res.extensions_mut().insert(*limited);
        }
        res
    }
}

impl From<crate::db::DbError> for ApiError {
    fn from(e: crate::db::DbError) -> Self {
        Self::internal(e)
    }
}

/// The stable code for an error status produced outside our handlers
/// (routing, timeouts, body limits), used by the problem fallback layer.
pub fn code_for_status(status: StatusCode) -> &'static str {
    match status {
        StatusCode::BAD_REQUEST => "request.bad_request",
        StatusCode::UNAUTHORIZED => "auth.unauthenticated",
        StatusCode::FORBIDDEN => "http.forbidden",
        StatusCode::NOT_FOUND => "http.not_found",
        StatusCode::METHOD_NOT_ALLOWED => "http.method_not_allowed",
        StatusCode::NOT_ACCEPTABLE => "http.not_acceptable",
        StatusCode::REQUEST_TIMEOUT => "http.timeout",
        StatusCode::PAYLOAD_TOO_LARGE => "request.too_large",
        StatusCode::UNSUPPORTED_MEDIA_TYPE => "request.unsupported_media_type",
        StatusCode::UNPROCESSABLE_ENTITY => "request.invalid_body",
        StatusCode::TOO_MANY_REQUESTS => "http.rate_limited",
        StatusCode::SERVICE_UNAVAILABLE => "http.unavailable",
        s if s.is_client_error() => "http.client_error",
        _ => "internal.error",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn renders_problem_json_with_stable_code() {
        let res = ApiError::bad_request("request.malformed_json", "expected `}`").into_response();
        assert_eq!(res.status(), StatusCode::BAD_REQUEST);
        assert_eq!(res.headers()[header::CONTENT_TYPE], PROBLEM_JSON);
        let body = axum::body::to_bytes(res.into_body(), 4096).await.unwrap();
        let p: Problem = serde_json::from_slice(&body).unwrap();
        assert_eq!(p.code, "request.malformed_json");
        assert_eq!(p.status, 400);
        assert_eq!(p.kind, "urn:stockade:problem:request.malformed_json");
        assert_eq!(p.detail.as_deref(), Some("expected `}`"));
    }

    #[tokio::test]
    async fn internal_errors_never_leak_their_cause() {
        let res = ApiError::internal("SELECT secret FROM keys failed").into_response();
        assert_eq!(res.status(), StatusCode::INTERNAL_SERVER_ERROR);
        let body = axum::body::to_bytes(res.into_body(), 4096).await.unwrap();
        let text = String::from_utf8(body.to_vec()).unwrap();
        assert!(!text.contains("SELECT"), "{text}");
        assert!(text.contains("internal.error"));
    }

    #[test]
    fn status_mapping() {
        assert_eq!(
            code_for_status(StatusCode::PAYLOAD_TOO_LARGE),
            "request.too_large"
        );
        assert_eq!(
            code_for_status(StatusCode::METHOD_NOT_ALLOWED),
            "http.method_not_allowed"
        );
        assert_eq!(
            code_for_status(StatusCode::IM_A_TEAPOT),
            "http.client_error"
        );
        assert_eq!(code_for_status(StatusCode::BAD_GATEWAY), "internal.error");
    }
}
