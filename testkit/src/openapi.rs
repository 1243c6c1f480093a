//! A small validator for the subset of OpenAPI 3.0 that Overseerr's spec uses.
//!
//! This module owns checking JSON bodies and query strings against an OpenAPI 3.0 document,
//! so that simulators can refuse — and record — what the real service would refuse, and tests
//! can check that the simulators answer what the spec describes.
//!
//! The document is loaded from YAML (`serde_yaml`) into a [`serde_json::Value`]. Supported
//! schema keywords: `$ref` (local, `#/…`), `type` (`object`, `array`, `string`, `number`,
//! `integer`, `boolean`), `nullable`, `enum`, `properties`, `required`,
//! `additionalProperties` (`false` or a schema), `items`, `minItems`/`maxItems`,
//! `minLength`/`maxLength`, `minimum`/`maximum` (with 3.0's boolean `exclusiveMinimum`/
//! `exclusiveMaximum`), `oneOf`/`anyOf`/`allOf`, and `readOnly`/`writeOnly` (a read-only
//! property must not be sent in a request and is not required there; write-only the other
//! way round). `format`, `pattern`, `example`, `default` and `description` are not checked.
//! Without `nullable: true`, `null` is refused wherever a `type` is given, as OpenAPI 3.0 says.
//!
//! Errors are plain sentences that start with where the problem is (`body/mediaId: …`).

use std::path::Path;

use anyhow::Context;
use serde_json::{Map, Number, Value};

/// Nesting depth after which validation gives up (a guard against `$ref` cycles).
const MAX_DEPTH: usize = 64;

/// Whether a value travels to the server or back; decides how `readOnly`/`writeOnly` apply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// A request body or parameter (client → server).
    Request,
    /// A response body (server → client).
    Response,
}

/// A loaded OpenAPI 3.0 document.
#[derive(Debug, Clone)]
pub struct OpenApiSpec {
    doc: Value,
}

impl OpenApiSpec {
    /// Loads an OpenAPI 3.0 document from a YAML (or JSON) file.
    ///
    /// # Errors
    ///
    /// When the file cannot be read or is not a YAML mapping with `paths`.
    pub fn load(path: impl AsRef<Path>) -> anyhow::Result<Self> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading OpenAPI document {}", path.display()))?;
        Self::from_yaml(&text).with_context(|| format!("parsing {}", path.display()))
    }

    /// Parses an OpenAPI 3.0 document from YAML (or JSON) text.
    ///
    /// # Errors
    ///
    /// When the text is not YAML or has no `paths` mapping.
    pub fn from_yaml(text: &str) -> anyhow::Result<Self> {
        let doc: Value = serde_yaml::from_str(text).context("not a YAML document")?;
        anyhow::ensure!(
            doc.get("paths").is_some_and(Value::is_object),
            "not an OpenAPI document: no `paths` mapping"
        );
        Ok(Self { doc })
    }

    /// The whole document.
    pub fn document(&self) -> &Value {
        &self.doc
    }

    /// The operation object of `method` (any case) on `path_template` (e.g. `/request/{requestId}`),
    /// if the spec has it.
    pub fn operation(&self, method: &str, path_template: &str) -> Option<&Value> {
        self.doc
            .get("paths")?
            .get(path_template)?
            .get(method.to_ascii_lowercase())
    }

    /// The path template of the spec that a concrete path (without the server prefix, e.g.
    /// `/request/12`) matches. Templates with more literal segments win, so `/request/count`
    /// beats `/request/{requestId}`.
    pub fn match_path(&self, path: &str) -> Option<String> {
        let wanted: Vec<&str> = path.trim_end_matches('/').split('/').collect();
        let paths = self.doc.get("paths")?.as_object()?;
        paths
            .keys()
            .filter_map(|template| {
                let segments: Vec<&str> = template.trim_end_matches('/').split('/').collect();
                if segments.len() != wanted.len() {
                    return None;
                }
                let mut literals = 0;
                for (pattern, actual) in segments.iter().zip(&wanted) {
                    if pattern.starts_with('{') && pattern.ends_with('}') {
                        if actual.is_empty() {
                            return None;
                        }
                    } else if pattern == actual {
                        literals += 1;
                    } else {
                        return None;
                    }
                }
                Some((literals, template))
            })
            .max_by_key(|(literals, _)| *literals)
            .map(|(_, template)| template.clone())
    }

    /// Checks a JSON request body against `requestBody` of the operation
    /// (`content.application/json.schema`). `Value::Null` stands for "no body".
    ///
    /// # Errors
    ///
    /// Every violation found, or a single one when the operation is not in the spec.
    pub fn validate_request_body(
        &self,
        method: &str,
        path_template: &str,
        body: &Value,
    ) -> Result<(), Vec<String>> {
        let operation = self.require_operation(method, path_template)?;
        let Some(request_body) = operation.get("requestBody") else {
            return if body.is_null() {
                Ok(())
            } else {
                Err(vec![format!(
                    "{} {path_template} takes no request body",
                    method.to_ascii_uppercase()
                )])
            };
        };
        let request_body = self.resolve(request_body).map_err(|err| vec![err])?;
        if body.is_null() {
            let required = request_body.get("required").and_then(Value::as_bool);
            return if required == Some(true) {
                Err(vec!["body: the request body is required".to_string()])
            } else {
                Ok(())
            };
        }
        let schema = json_schema(request_body).ok_or_else(|| {
            vec![format!(
                "{} {path_template}: the spec has no application/json request body",
                method.to_ascii_uppercase()
            )]
        })?;
        self.validate(schema, body, Direction::Request, "body")
    }

    /// Checks a JSON response body against the operation's response for `status` (or its
    /// `default` response).
    ///
    /// # Errors
    ///
    /// Every violation found, or a single one when the operation or status is not in the spec.
    pub fn validate_response_body(
        &self,
        method: &str,
        path_template: &str,
        status: u16,
        body: &Value,
    ) -> Result<(), Vec<String>> {
        let operation = self.require_operation(method, path_template)?;
        let responses = operation.get("responses");
        let response = responses
            .and_then(|responses| {
                responses
                    .get(status.to_string())
                    .or_else(|| responses.get(format!("{}XX", status / 100)))
                    .or_else(|| responses.get("default"))
            })
            .ok_or_else(|| {
                vec![format!(
                    "{} {path_template}: the spec documents no {status} response",
                    method.to_ascii_uppercase()
                )]
            })?;
        let response = self.resolve(response).map_err(|err| vec![err])?;
        match json_schema(response) {
            Some(schema) => self.validate(schema, body, Direction::Response, "response"),
            None if body.is_null() => Ok(()),
            None => Err(vec![format!(
                "{} {path_template}: the {status} response has no JSON body in the spec",
                method.to_ascii_uppercase()
            )]),
        }
    }

    /// Checks query parameters (name, raw value) against the `in: query` parameters of the
    /// operation and of its path: unknown names, missing required ones, and values that do not
    /// fit the parameter's schema once read as its type (`number`, `integer`, `boolean`,
    /// `string`; arrays split on `,`).
    ///
    /// # Errors
    ///
    /// Every violation found, or a single one when the operation is not in the spec.
    pub fn validate_query(
        &self,
        method: &str,
        path_template: &str,
        query: &[(String, String)],
    ) -> Result<(), Vec<String>> {
        let operation = self.require_operation(method, path_template)?;
        let path_item = self.doc["paths"].get(path_template);
        let mut parameters = Vec::new();
        for list in [
            path_item.and_then(|item| item.get("parameters")),
            operation.get("parameters"),
        ]
        .into_iter()
        .flatten()
        .filter_map(Value::as_array)
        {
            for parameter in list {
                let parameter = self.resolve(parameter).map_err(|err| vec![err])?;
                if parameter.get("in").and_then(Value::as_str) == Some("query") {
                    parameters.push(parameter);
                }
            }
        }

        let mut errors = Vec::new();
        for parameter in &parameters {
            let name = parameter.get("name").and_then(Value::as_str).unwrap_or("");
            let required = parameter.get("required").and_then(Value::as_bool) == Some(true);
            if required && !query.iter().any(|(key, _)| key == name) {
                errors.push(format!("query/{name}: required parameter is missing"));
            }
        }
        for (key, raw) in query {
            let Some(parameter) = parameters
                .iter()
                .find(|parameter| parameter.get("name").and_then(Value::as_str) == Some(key))
            else {
                errors.push(format!("query/{key}: unknown query parameter"));
                continue;
            };
            let schema = parameter.get("schema").unwrap_or(&Value::Null);
            let at = format!("query/{key}");
            match self.coerce(schema, raw) {
                Ok(value) => {
                    if let Err(mut found) = self.validate(schema, &value, Direction::Request, &at) {
                        errors.append(&mut found);
                    }
                }
                Err(err) => errors.push(format!("{at}: {err}")),
            }
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors)
        }
    }

    /// Checks `value` against `schema` (which may be a `$ref`); `at` names the value in
    /// messages.
    ///
    /// # Errors
    ///
    /// Every violation found.
    pub fn validate(
        &self,
        schema: &Value,
        value: &Value,
        direction: Direction,
        at: &str,
    ) -> Result<(), Vec<String>> {
        let mut errors = Vec::new();
        self.check(schema, value, direction, at, 0, &mut errors);
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors)
        }
    }

    fn require_operation(&self, method: &str, path_template: &str) -> Result<&Value, Vec<String>> {
        self.operation(method, path_template).ok_or_else(|| {
            vec![format!(
                "{} {path_template} is not in the spec",
                method.to_ascii_uppercase()
            )]
        })
    }

    /// Follows `$ref`s (local JSON pointers) until a non-reference object.
    fn resolve<'a>(&'a self, mut node: &'a Value) -> Result<&'a Value, String> {
        for _ in 0..MAX_DEPTH {
            let Some(reference) = node.get("$ref").and_then(Value::as_str) else {
                return Ok(node);
            };
            let pointer = reference
                .strip_prefix('#')
                .ok_or_else(|| format!("unsupported non-local $ref {reference}"))?;
            node = self
                .doc
                .pointer(pointer)
                .ok_or_else(|| format!("unresolvable $ref {reference}"))?;
        }
        Err("$ref chain too long".to_string())
    }

    /// Reads a raw query value as the type its schema names.
    fn coerce(&self, schema: &Value, raw: &str) -> Result<Value, String> {
        let schema = self.resolve(schema)?;
        match schema.get("type").and_then(Value::as_str) {
            Some("number") | Some("integer") => parse_number(raw)
                .map(Value::Number)
                .ok_or_else(|| format!("{raw:?} is not a number")),
            Some("boolean") => match raw {
                "true" => Ok(Value::Bool(true)),
                "false" => Ok(Value::Bool(false)),
                _ => Err(format!("{raw:?} is not a boolean")),
            },
            Some("array") => {
                let items = schema.get("items").unwrap_or(&Value::Null);
                raw.split(',')
                    .map(|item| self.coerce(items, item))
                    .collect::<Result<Vec<_>, _>>()
                    .map(Value::Array)
            }
            _ => Ok(Value::String(raw.to_string())),
        }
    }

    fn check(
        &self,
        schema: &Value,
        value: &Value,
        direction: Direction,
        at: &str,
        depth: usize,
        errors: &mut Vec<String>,
    ) {
        if depth > MAX_DEPTH {
            errors.push(format!("{at}: schema nesting too deep"));
            return;
        }
        let schema = match self.resolve(schema) {
            Ok(schema) => schema,
            Err(err) => {
                errors.push(format!("{at}: {err}"));
                return;
            }
        };
        // An empty schema (`originalLanguage:` with nothing under it) or `true` allows anything.
        let Some(keywords) = schema.as_object() else {
            if schema == &Value::Bool(false) {
                errors.push(format!("{at}: no value is allowed here"));
            }
            return;
        };

        let ty = keywords.get("type").and_then(Value::as_str);
        if value.is_null() {
            if keywords.get("nullable").and_then(Value::as_bool) == Some(true) {
                return;
            }
            if ty.is_some() {
                errors.push(format!("{at}: null is not allowed (not nullable)"));
                return;
            }
        } else if let Some(ty) = ty {
            if !has_type(value, ty) {
                errors.push(format!("{at}: expected {ty}, got {}", type_name(value)));
                return;
            }
        }

        if let Some(options) = keywords.get("enum").and_then(Value::as_array) {
            if !options.iter().any(|option| json_eq(option, value)) {
                errors.push(format!(
                    "{at}: {value} is not one of {}",
                    Value::Array(options.clone())
                ));
            }
        }

        self.check_combinators(keywords, value, direction, at, depth, errors);

        match value {
            Value::Number(number) => check_number(keywords, number, at, errors),
            Value::String(text) => check_string(keywords, text, at, errors),
            Value::Array(items) => self.check_array(keywords, items, direction, at, depth, errors),
            Value::Object(fields) => {
                self.check_object(keywords, fields, direction, at, depth, errors)
            }
            Value::Null | Value::Bool(_) => {}
        }
    }

    fn check_combinators(
        &self,
        keywords: &Map<String, Value>,
        value: &Value,
        direction: Direction,
        at: &str,
        depth: usize,
        errors: &mut Vec<String>,
    ) {
        if let Some(all) = keywords.get("allOf").and_then(Value::as_array) {
            for branch in all {
                self.check(branch, value, direction, at, depth + 1, errors);
            }
        }
        for (keyword, exactly_one) in [("anyOf", false), ("oneOf", true)] {
            let Some(branches) = keywords.get(keyword).and_then(Value::as_array) else {
                continue;
            };
            let outcomes: Vec<Vec<String>> = branches
                .iter()
                .map(|branch| {
                    let mut found = Vec::new();
                    self.check(branch, value, direction, at, depth + 1, &mut found);
                    found
                })
                .collect();
            let matching = outcomes.iter().filter(|found| found.is_empty()).count();
            if matching == 0 {
                let reasons: Vec<String> = outcomes
                    .iter()
                    .enumerate()
                    .map(|(index, found)| format!("[{index}] {}", found.join("; ")))
                    .collect();
                errors.push(format!(
                    "{at}: matches none of the {keyword} schemas ({})",
                    reasons.join(" | ")
                ));
            } else if exactly_one && matching > 1 {
                errors.push(format!(
                    "{at}: matches {matching} of the oneOf schemas, exactly one is allowed"
                ));
            }
        }
    }

    fn check_array(
        &self,
        keywords: &Map<String, Value>,
        items: &[Value],
        direction: Direction,
        at: &str,
        depth: usize,
        errors: &mut Vec<String>,
    ) {
        let len = items.len() as u64;
        if let Some(min) = keywords.get("minItems").and_then(Value::as_u64) {
            if len < min {
                errors.push(format!("{at}: {len} items, at least {min} required"));
            }
        }
        if let Some(max) = keywords.get("maxItems").and_then(Value::as_u64) {
            if len > max {
                errors.push(format!("{at}: {len} items, at most {max} allowed"));
            }
        }
        if let Some(item_schema) = keywords.get("items") {
            for (index, item) in items.iter().enumerate() {
                let item_at = format!("{at}/{index}");
                self.check(item_schema, item, direction, &item_at, depth + 1, errors);
            }
        }
    }

    fn check_object(
        &self,
        keywords: &Map<String, Value>,
        fields: &Map<String, Value>,
        direction: Direction,
        at: &str,
        depth: usize,
        errors: &mut Vec<String>,
    ) {
        let properties = keywords.get("properties").and_then(Value::as_object);
        let property = |name: &str| properties.and_then(|properties| properties.get(name));
        // The property's own `readOnly`/`writeOnly`, or those of the schema it refers to.
        let flag = |name: &str, flag: &str| {
            property(name).is_some_and(|schema| {
                [Some(schema), self.resolve(schema).ok()]
                    .into_iter()
                    .flatten()
                    .any(|schema| schema.get(flag).and_then(Value::as_bool) == Some(true))
            })
        };
        let hidden_flag = match direction {
            Direction::Request => "readOnly",
            Direction::Response => "writeOnly",
        };

        if let Some(required) = keywords.get("required").and_then(Value::as_array) {
            for name in required.iter().filter_map(Value::as_str) {
                if !fields.contains_key(name) && !flag(name, hidden_flag) {
                    errors.push(format!("{at}/{name}: required property is missing"));
                }
            }
        }

        for (name, value) in fields {
            let field_at = format!("{at}/{name}");
            if let Some(schema) = property(name) {
                if flag(name, hidden_flag) {
                    let side = match direction {
                        Direction::Request => "read-only, it must not be sent in a request",
                        Direction::Response => "write-only, it must not be sent in a response",
                    };
                    errors.push(format!("{field_at}: the property is {side}"));
                }
                self.check(schema, value, direction, &field_at, depth + 1, errors);
                continue;
            }
            match keywords.get("additionalProperties") {
                Some(Value::Bool(false)) => {
                    errors.push(format!("{field_at}: additional property is not allowed"));
                }
                Some(extra @ Value::Object(_)) => {
                    self.check(extra, value, direction, &field_at, depth + 1, errors);
                }
                _ => {}
            }
        }
    }
}

/// `content.application/json.schema` of a request body or response object.
fn json_schema(node: &Value) -> Option<&Value> {
    let content = node.get("content")?.as_object()?;
    content
        .iter()
        .find(|(media_type, _)| {
            let media_type = media_type.split(';').next().unwrap_or("").trim();
            media_type == "application/json" || media_type.ends_with("+json")
        })
        .and_then(|(_, media)| media.get("schema"))
}

fn has_type(value: &Value, ty: &str) -> bool {
    match ty {
        "object" => value.is_object(),
        "array" => value.is_array(),
        "string" => value.is_string(),
        "boolean" => value.is_boolean(),
        "number" => value.is_number(),
        "integer" => value.as_number().is_some_and(is_integer),
        // An unknown type name is a spec problem, not a value problem.
        _ => true,
    }
}

fn is_integer(number: &Number) -> bool {
    number.is_i64() || number.is_u64() || number.as_f64().is_some_and(|f| f.fract() == 0.0)
}

fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(number) if is_integer(number) => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// JSON equality where `1` and `1.0` are the same number.
fn json_eq(left: &Value, right: &Value) -> bool {
    match (left, right) {
        (Value::Number(left), Value::Number(right)) => left.as_f64() == right.as_f64(),
        _ => left == right,
    }
}

fn parse_number(raw: &str) -> Option<Number> {
    if let Ok(int) = raw.parse::<i64>() {
        return Some(Number::from(int));
    }
    raw.parse::<f64>().ok().and_then(Number::from_f64)
}

fn check_number(
    keywords: &Map<String, Value>,
    number: &Number,
    at: &str,
    errors: &mut Vec<String>,
) {
    let Some(value) = number.as_f64() else {
        return;
    };
    let exclusive = |key: &str| keywords.get(key).and_then(Value::as_bool) == Some(true);
    if let Some(min) = keywords.get("minimum").and_then(Value::as_f64) {
        if value < min || (exclusive("exclusiveMinimum") && value == min) {
            errors.push(format!("{at}: {number} is below the minimum {min}"));
        }
    }
    if let Some(max) = keywords.get("maximum").and_then(Value::as_f64) {
        if value > max || (exclusive("exclusiveMaximum") && value == max) {
            errors.push(format!("{at}: {number} is above the maximum {max}"));
        }
    }
}

fn check_string(keywords: &Map<String, Value>, text: &str, at: &str, errors: &mut Vec<String>) {
    let len = text.chars().count() as u64;
    if let Some(min) = keywords.get("minLength").and_then(Value::as_u64) {
        if len < min {
            errors.push(format!("{at}: shorter than {min} characters"));
        }
    }
    if let Some(max) = keywords.get("maxLength").and_then(Value::as_u64) {
        if len > max {
            errors.push(format!("{at}: longer than {max} characters"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn overseerr() -> OpenApiSpec {
        let path = crate::contracts::contract(crate::contracts::OVERSEERR_API);
        OpenApiSpec::load(&path)
            .unwrap_or_else(|err| panic!("{}", crate::contracts::missing(&path, err.root_cause())))
    }

    fn errors_of(result: Result<(), Vec<String>>) -> String {
        result.expect_err("the value must be refused").join("\n")
    }

    #[test]
    fn a_movie_request_body_is_valid() {
        let body = json!({"mediaType": "movie", "mediaId": 603, "is4k": false});
        assert_eq!(
            overseerr().validate_request_body("POST", "/request", &body),
            Ok(())
        );
    }

    #[test]
    fn tv_request_bodies_with_a_season_list_or_all_are_valid() {
        let spec = overseerr();
        for seasons in [json!([0, 1, 2]), json!("all")] {
            let body = json!({"mediaType": "tv", "mediaId": 1399, "tvdbId": 121361,
                              "seasons": seasons, "is4k": true, "userId": null});
            assert_eq!(
                spec.validate_request_body("post", "/request", &body),
                Ok(())
            );
        }
    }

    #[test]
    fn a_body_without_media_id_is_refused() {
        let body = json!({"mediaType": "movie"});
        let errors = errors_of(overseerr().validate_request_body("POST", "/request", &body));
        assert!(
            errors.contains("body/mediaId: required property is missing"),
            "{errors}"
        );
    }

    #[test]
    fn an_unknown_media_type_is_refused() {
        let body = json!({"mediaType": "film", "mediaId": 603});
        let errors = errors_of(overseerr().validate_request_body("POST", "/request", &body));
        assert!(
            errors.contains("body/mediaType: \"film\" is not one of"),
            "{errors}"
        );
    }

    #[test]
    fn snake_case_names_and_ids_as_strings_are_refused() {
        let spec = overseerr();
        let errors = errors_of(spec.validate_request_body(
            "POST",
            "/request",
            &json!({"media_type": "movie", "media_id": 603}),
        ));
        assert!(
            errors.contains("body/mediaType: required property is missing"),
            "{errors}"
        );
        let errors = errors_of(spec.validate_request_body(
            "POST",
            "/request",
            &json!({"mediaType": "movie", "mediaId": "603", "is4k": "false"}),
        ));
        assert!(
            errors.contains("body/mediaId: expected number, got string"),
            "{errors}"
        );
        assert!(
            errors.contains("body/is4k: expected boolean, got string"),
            "{errors}"
        );
    }

    #[test]
    fn seasons_must_be_all_or_non_negative_numbers() {
        let spec = overseerr();
        for seasons in [
            json!("some"),
            json!([-1]),
            json!([1, "2"]),
            json!({"1": true}),
        ] {
            let body = json!({"mediaType": "tv", "mediaId": 1399, "seasons": seasons});
            let errors = errors_of(spec.validate_request_body("POST", "/request", &body));
            assert!(
                errors.contains("body/seasons: matches none of the oneOf"),
                "{errors}"
            );
        }
    }

    #[test]
    fn null_is_refused_where_the_spec_does_not_say_nullable() {
        let body = json!({"mediaType": "tv", "mediaId": 1399, "tvdbId": null});
        let errors = errors_of(overseerr().validate_request_body("POST", "/request", &body));
        assert!(
            errors.contains("body/tvdbId: null is not allowed"),
            "{errors}"
        );
    }

    #[test]
    fn a_missing_body_and_an_unknown_operation_are_reported() {
        let spec = overseerr();
        let errors = errors_of(spec.validate_request_body("POST", "/request", &Value::Null));
        assert!(errors.contains("required"), "{errors}");
        let errors = errors_of(spec.validate_request_body("POST", "/requests", &json!({})));
        assert!(errors.contains("not in the spec"), "{errors}");
    }

    #[test]
    fn read_only_properties_are_required_in_responses_only() {
        let spec = overseerr();
        let request = json!({"id": 1, "status": 2, "is4k": false, "modifiedBy": null,
                             "media": {"id": 1, "tmdbId": 603, "tvdbId": null, "status": 2}});
        assert_eq!(
            spec.validate_response_body("POST", "/request", 201, &request),
            Ok(())
        );
        let errors = errors_of(spec.validate_response_body(
            "GET",
            "/request/{requestId}",
            200,
            &json!({"status": 2}),
        ));
        assert!(
            errors.contains("response/id: required property is missing"),
            "{errors}"
        );
        let errors = errors_of(spec.validate_response_body(
            "GET",
            "/request/{requestId}",
            200,
            &json!({"id": 1, "status": 2, "requestedBy": {"id": 1, "email": "a@b.c"}}),
        ));
        assert!(
            errors.contains("response/requestedBy/createdAt: required property is missing"),
            "{errors}"
        );
    }

    #[test]
    fn query_parameters_are_read_as_their_types_and_checked() {
        let spec = overseerr();
        let query = |pairs: &[(&str, &str)]| -> Vec<(String, String)> {
            pairs
                .iter()
                .map(|(key, value)| (key.to_string(), value.to_string()))
                .collect()
        };
        let good = query(&[
            ("take", "100"),
            ("skip", "0"),
            ("filter", "all"),
            ("sort", "added"),
        ]);
        assert_eq!(spec.validate_query("GET", "/request", &good), Ok(()));
        let bad = query(&[("take", "many"), ("filter", "everything"), ("page", "1")]);
        let errors = errors_of(spec.validate_query("GET", "/request", &bad));
        assert!(
            errors.contains("query/take: \"many\" is not a number"),
            "{errors}"
        );
        assert!(
            errors.contains("query/filter: \"everything\" is not one of"),
            "{errors}"
        );
        assert!(
            errors.contains("query/page: unknown query parameter"),
            "{errors}"
        );
    }

    #[test]
    fn concrete_paths_match_the_most_literal_template() {
        let spec = overseerr();
        assert_eq!(
            spec.match_path("/request/12").as_deref(),
            Some("/request/{requestId}")
        );
        assert_eq!(
            spec.match_path("/request/count").as_deref(),
            Some("/request/count")
        );
        assert_eq!(spec.match_path("/request").as_deref(), Some("/request"));
        assert_eq!(spec.match_path("/no/such/path"), None);
    }

    #[test]
    fn the_keywords_the_overseerr_spec_does_not_use_are_checked_too() {
        let spec = OpenApiSpec::from_yaml(
            r#"
paths: {}
components:
  schemas:
    Named:
      type: object
      required: [name]
      properties:
        name: {type: string, minLength: 1}
    Strict:
      allOf:
        - $ref: '#/components/schemas/Named'
        - type: object
          properties:
            count: {type: integer, minimum: 1, maximum: 3}
      additionalProperties: false
      properties:
        name: {}
        count: {}
"#,
        )
        .unwrap();
        let schema = json!({"$ref": "#/components/schemas/Strict"});
        let check = |value: Value| spec.validate(&schema, &value, Direction::Request, "v");
        assert_eq!(check(json!({"name": "x", "count": 2})), Ok(()));
        let errors = errors_of(check(json!({"name": "", "count": 2.5, "extra": 1})));
        assert!(errors.contains("v/name: shorter than 1"), "{errors}");
        assert!(
            errors.contains("v/count: expected integer, got number"),
            "{errors}"
        );
        assert!(
            errors.contains("v/extra: additional property is not allowed"),
            "{errors}"
        );
        let errors = errors_of(check(json!({"count": 4})));
        assert!(
            errors.contains("v/name: required property is missing"),
            "{errors}"
        );
        assert!(
            errors.contains("v/count: 4 is above the maximum 3"),
            "{errors}"
        );
    }
}
