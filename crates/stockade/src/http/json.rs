//! `ApiJson<T>`: the JSON body extractor every handler uses, so that a bad
//! body always answers in our problem+json shape. Body types derive
//! `Deserialize` with `#[serde(deny_unknown_fields)]` (no mass assignment).

use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, Request};
use axum::http::StatusCode;
use serde::de::DeserializeOwned;

use super::error::ApiError;

#[derive(Debug, Clone, Copy, Default)]
pub struct ApiJson<T>(pub T);

impl<S, T> FromRequest<S> for ApiJson<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(value)) => Ok(Self(value)),
            Err(rejection) => Err(map_rejection(rejection)),
        }
    }
}

fn map_rejection(rejection: JsonRejection) -> ApiError {
    match rejection {
        JsonRejection::MissingJsonContentType(_) => ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "request.unsupported_media_type",
        )
        .with_detail("expected Content-Type: application/json"),
        JsonRejection::JsonSyntaxError(e) => {
            ApiError::bad_request("request.malformed_json", serde_detail(&e.body_text()))
        }
        JsonRejection::JsonDataError(e) => {
            ApiError::bad_request("request.invalid_body", serde_detail(&e.body_text()))
        }
        JsonRejection::BytesRejection(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "request.too_large")
                .with_detail("the request body is larger than allowed")
        }
        other => ApiError::bad_request("request.unreadable_body", other.body_text()),
    }
}

/// serde's message without axum's prefix, bounded in length.
fn serde_detail(text: &str) -> String {
    let text = text.split_once(": ").map_or(text, |(_, rest)| rest).trim();
    text.chars().take(300).collect()
}
