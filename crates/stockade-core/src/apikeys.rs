//! API keys' pure part: the key format, its strict parser, generation and
//! keyed hash (`model`). Storing keys, authenticating requests and the routes
//! stay in `stockade::apikeys`; nothing here reads a row or a request.

pub mod model;
