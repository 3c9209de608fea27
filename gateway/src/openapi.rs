//! The OpenAPI 3.1 document of the API, built from the code: the wire types' JSON Schemas
//! (the same ones as `schemas/json/`) and the routes' own declarations below.

use serde_json::{Map, Value, json};
use unmark_schemas::params::{Engine, OutputFormat};

/// `#/components/schemas/<name>`.
fn schema_ref(name: &str) -> Value {
    json!({ "$ref": format!("#/components/schemas/{name}") })
}

/// A published wire schema as a component; its `$defs` become components too.
fn wire_schema(file: &str, name: &str, components: &mut Map<String, Value>) {
    let Some((_, text)) = unmark_schemas::json_schemas()
        .into_iter()
        .find(|(f, _)| *f == file)
    else {
        return;
    };
    let text = text.replace("#/$defs/", "#/components/schemas/");
    let Ok(Value::Object(mut schema)) = serde_json::from_str::<Value>(&text) else {
        return;
    };
    schema.remove("$schema");
    if let Some(Value::Object(defs)) = schema.remove("$defs") {
        components.extend(defs);
    }
    components.insert(name.to_owned(), Value::Object(schema));
}

fn problem(description: &str) -> Value {
    json!({
        "description": description,
        "content": { "application/problem+json": { "schema": schema_ref("Problem") } }
    })
}

fn json_response(description: &str, schema: Value) -> Value {
    json!({ "description": description, "content": { "application/json": { "schema": schema } } })
}

/// Every error an endpoint that runs a job can answer.
fn job_errors(responses: &mut Map<String, Value>) {
    for (code, why) in [
        ("400", "a bad parameter, part or mask size"),
        ("401", "missing, invalid or revoked API key"),
        (
            "409",
            "a request with this Idempotency-Key is still being answered",
        ),
        ("413", "a body, file or image over its limit"),
        (
            "415",
            "not an image format unmark reads, or not a supported body",
        ),
        (
            "422",
            "a truncated or corrupt image; no mask; a plugin step failed; Idempotency-Key reused",
        ),
        (
            "429",
            "a rate limit, the concurrency cap or the quota (see Retry-After)",
        ),
        ("500", "a fault of ours; quote the request id"),
        ("503", "the service is busy for this plan (see Retry-After)"),
        ("504", "the job made no progress for too long"),
    ] {
        responses.insert(code.into(), problem(why));
    }
}

fn image_response() -> Value {
    let binary = json!({ "type": "string", "format": "binary" });
    json!({
        "description": "the image, with X-Job-Id; X-Credits-Charged and X-Quota-Remaining for a key on a plan",
        "content": {
            "image/png": { "schema": binary },
            "image/jpeg": { "schema": binary },
            "image/webp": { "schema": binary }
        }
    })
}

fn multipart_form() -> Value {
    let engines: Vec<&str> = Engine::ALL.iter().map(|e| e.as_str()).collect();
    json!({
        "type": "object",
        "required": ["image"],
        "properties": {
            "image": { "type": "string", "format": "binary", "description": "PNG, JPEG, WebP, BMP, TIFF or GIF" },
            "mask": { "type": "string", "format": "binary", "description": "white = remove; without one (and without a profile or detector) the built-in detector finds the watermark" },
            "engine": { "type": "string", "enum": engines },
            "radius": { "type": "integer", "minimum": 1, "maximum": 32 },
            "mask_dilate": { "type": "integer", "minimum": 0, "maximum": 64 },
            "threshold": { "type": "number", "minimum": 0.01, "maximum": 0.99, "description": "with no mask and no profile: the built-in detector's probability threshold" },
            "return": { "type": "string", "enum": ["image", "mask"], "description": "`mask`: the mask that was removed (detected or sent, grown by `mask_dilate`), a grayscale PNG, to review a detection" },
            "format": { "type": "string", "enum": [OutputFormat::Png.as_str(), OutputFormat::Jpeg.as_str(), OutputFormat::Webp.as_str()] },
            "quality": { "type": "integer", "minimum": 1, "maximum": 100 },
            "work_max_side": { "type": "integer", "minimum": 64, "maximum": 16384 },
            "keep_metadata": { "type": "boolean" },
            "pre": { "type": "string", "description": "WASM filters before pre-scale: `name[@version]` list (comma-separated), or JSON `[{\"plugin\": \"blur@1\", \"params\": {\"sigma\": 2}}]`" },
            "detector": { "type": "string", "description": "a WASM mask detector, `name[@version]` or a JSON object; its mask is added to the one sent, which becomes optional" },
            "post": { "type": "string", "description": "WASM filters on the finished image, like `pre`" },
            "profile": { "type": "string", "description": "a watermark profile's id (POST /api/v1/watermark-profiles): the mark is found and unblended; makes `mask` optional" },
            "callback_url": { "type": "string", "description": "an absolute http(s) URL" }
        }
    })
}

fn id_parameter() -> Value {
    json!({ "name": "id", "in": "path", "required": true, "schema": { "type": "string" } })
}

fn idempotency_header() -> Value {
    json!({
        "name": "Idempotency-Key", "in": "header", "required": false,
        "schema": { "type": "string", "minLength": 1, "maxLength": 255 },
        "description": "the first answer is kept for 24 h and replayed for the same request"
    })
}

fn components() -> Value {
    let mut schemas = Map::new();
    wire_schema("submit-request.json", "SubmitRequest", &mut schemas);
    wire_schema("job-event.json", "JobEvent", &mut schemas);
    let nullable = |t: &str| json!({ "type": [t, "null"] });
    let links = json!({
        "status_url": { "type": "string" }, "result_url": { "type": "string" },
        "events_url": { "type": "string" }, "events_subject": { "type": "string" }
    });
    let extend = |mut base: Value, more: &Value| {
        if let (Some(a), Some(b)) = (base["properties"].as_object_mut(), more.as_object()) {
            a.extend(b.clone());
        }
        base
    };
    schemas.insert(
        "Problem".into(),
        json!({
            "type": "object",
            "required": ["type", "title", "status", "detail"],
            "properties": {
                "type": { "type": "string" }, "title": { "type": "string" },
                "status": { "type": "integer" }, "detail": { "type": "string" },
                "request_id": { "type": "string" }
            }
        }),
    );
    schemas.insert("JobAccepted".into(), extend(json!({
        "type": "object",
        "required": ["id", "status", "status_url", "result_url", "events_url", "events_subject"],
        "properties": { "id": { "type": "string" }, "status": { "type": "string", "enum": ["queued"] } }
    }), &links));
    schemas.insert("Job".into(), extend(json!({
        "type": "object",
        "required": ["id", "pipeline", "status", "created_ms", "updated_ms", "stages"],
        "properties": {
            "id": { "type": "string" },
            "pipeline": { "type": "string" },
            "status": { "type": "string", "enum": ["queued", "running", "succeeded", "failed"] },
            "created_ms": { "type": "integer" },
            "updated_ms": { "type": "integer" },
            "finished_ms": nullable("integer"),
            "callback_url": nullable("string"),
            "stages": { "type": "array", "items": {
                "type": "object", "required": ["step", "stage", "ms"],
                "properties": { "step": { "type": "integer" }, "stage": { "type": "string" }, "ms": { "type": "number" } }
            }},
            "error": { "oneOf": [{ "type": "null" }, {
                "type": "object", "required": ["reason", "message"],
                "properties": { "reason": { "type": "string" }, "message": { "type": "string" }, "stage": nullable("string") }
            }]},
            "result": { "oneOf": [{ "type": "null" }, {
                "type": "object", "required": ["content_type", "size", "available"],
                "properties": {
                    "content_type": { "type": "string" }, "size": { "type": "integer" },
                    "expires_ms": nullable("integer"), "available": { "type": "boolean" }
                }
            }]},
            "webhook": { "oneOf": [{ "type": "null" }, {
                "type": "object", "required": ["state", "attempts"],
                "properties": {
                    "state": { "type": "string", "enum": ["pending", "delivered", "failed"] },
                    "attempts": { "type": "integer" }, "last_status": nullable("integer"),
                    "last_error": nullable("string")
                }
            }]}
        }
    }), &links));
    let counts = json!({
        "type": "object",
        "required": ["period", "requests", "successes", "failures", "avg_processing_ms"],
        "properties": {
            "period": { "type": "string" }, "requests": { "type": "integer" },
            "successes": { "type": "integer" }, "failures": { "type": "integer" },
            "avg_processing_ms": { "type": "number" }
        }
    });
    schemas.insert(
        "Usage".into(),
        json!({
            "type": "object",
            "required": ["key_id", "plan", "quota", "today", "month", "history"],
            "properties": {
                "key_id": { "type": "string" }, "plan": { "type": "string" },
                "quota": {
                    "type": "object",
                    "required": ["period", "limit", "used", "reserved", "remaining", "resets_ms"],
                    "properties": {
                        "period": { "type": "string" }, "limit": { "type": "integer" },
                        "used": { "type": "integer" }, "reserved": { "type": "integer" },
                        "remaining": { "type": "integer" }, "resets_ms": { "type": "integer" }
                    }
                },
                "today": counts, "month": counts,
                "history": { "type": "array", "items": counts }
            }
        }),
    );
    schemas.insert(
        "Plugin".into(),
        json!({
            "type": "object",
            "required": ["name", "version", "reference", "kind", "sha256", "size", "abi", "created_ms"],
            "properties": {
                "name": { "type": "string" }, "version": { "type": "string" },
                "reference": { "type": "string", "description": "name@version, as jobs name it" },
                "kind": { "type": "string", "enum": ["filter", "mask"] },
                "sha256": { "type": "string" }, "size": { "type": "integer" },
                "abi": { "type": "integer" }, "created_ms": { "type": "integer" }
            }
        }),
    );
    schemas.insert(
        "AdminUsage".into(),
        json!({
            "type": "object", "required": ["keys"],
            "properties": { "keys": { "type": "array", "items": schema_ref("Usage") } }
        }),
    );
    json!({
        "schemas": schemas,
        "securitySchemes": {
            "ApiKey": { "type": "apiKey", "in": "header", "name": "X-API-Key" },
            "Bearer": { "type": "http", "scheme": "bearer" }
        }
    })
}

/// The whole document.
pub(crate) fn document() -> Value {
    let mut run_job = Map::new();
    run_job.insert(
        "202".into(),
        json_response(
            "accepted; the job goes on (a synchronous request past its wait answers this too)",
            schema_ref("JobAccepted"),
        ),
    );
    job_errors(&mut run_job);
    let mut sync = run_job.clone();
    sync.insert("200".into(), image_response());
    let multipart = json!({ "multipart/form-data": { "schema": multipart_form() } });
    let mut both = multipart.clone();
    both["application/json"] = json!({ "schema": schema_ref("SubmitRequest") });
    let unauthorized = problem("missing, invalid or revoked API key");
    let not_found = problem("no such job");
    let mut doc = json!({
        "openapi": "3.1.0",
        "info": {
            "title": "unmark",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Removes watermarks from images. Errors are RFC 9457 problem details."
        },
        "security": [{ "ApiKey": [] }, { "Bearer": [] }],
        "components": components(),
        "paths": {
            "/api/v1/health": { "get": {
                "summary": "liveness", "security": [],
                "responses": { "200": json_response("alive", json!({ "type": "object", "required": ["status"] })) }
            }},
            "/api/v1/ready": { "get": {
                "summary": "readiness: database, blob store and broker", "security": [],
                "responses": {
                    "200": json_response("ready", json!({ "type": "object", "required": ["status", "checks"] })),
                    "503": json_response("not ready", json!({ "type": "object", "required": ["status", "checks"] }))
                }
            }},
            "/api/v1/openapi.json": { "get": {
                "summary": "this document", "security": [],
                "responses": { "200": json_response("OpenAPI 3.1", json!({ "type": "object" })) }
            }},
            "/metrics": { "get": {
                "summary": "Prometheus metrics (a bearer token when metrics_token is set)", "security": [],
                "responses": {
                    "200": { "description": "text exposition", "content": { "text/plain": { "schema": { "type": "string" } } } },
                    "401": problem("the metrics token is missing or wrong")
                }
            }},
            "/api/v1/remove-watermark": { "post": {
                "summary": "remove a watermark and wait for the image",
                "parameters": [idempotency_header()],
                "requestBody": { "required": true, "content": multipart },
                "responses": sync
            }},
            "/api/v1/jobs": { "post": {
                "summary": "submit a job; answers 202 at once",
                "parameters": [idempotency_header()],
                "requestBody": { "required": true, "content": both },
                "responses": run_job
            }},
            "/api/v1/jobs/{id}": { "get": {
                "summary": "a job's status, stage timings, error, result and webhook",
                "parameters": [id_parameter()],
                "responses": { "200": json_response("the job", schema_ref("Job")), "401": unauthorized, "404": not_found }
            }},
            "/api/v1/jobs/{id}/result": { "get": {
                "summary": "a job's image; for a failed job, the error it failed with",
                "parameters": [id_parameter()],
                "responses": {
                    "200": image_response(),
                    "400": problem("the job failed on a bad parameter or mask"),
                    "401": unauthorized, "404": not_found,
                    "409": problem("the job is still running"),
                    "410": problem("the result expired, or was returned synchronously"),
                    "413": problem("the job failed: input too large"),
                    "415": problem("the job failed: unsupported format"),
                    "422": problem("the job failed: corrupt image, no mask, or a plugin step failed"),
                    "500": problem("the job failed on our side"),
                    "504": problem("the job made no progress for too long")
                }
            }},
            "/api/v1/jobs/{id}/events": { "get": {
                "summary": "a job's events as Server-Sent Events (accepted, stage_done, succeeded, failed), history first",
                "parameters": [id_parameter()],
                "responses": {
                    "200": { "description": "each event's data is a JobEvent", "content": { "text/event-stream": { "schema": {
                        "type": "object",
                        "required": ["event", "data"],
                        "properties": {
                            "event": { "type": "string", "enum": ["accepted", "stage_done", "succeeded", "failed"] },
                            "data": { "type": "string", "contentMediaType": "application/json", "contentSchema": schema_ref("JobEvent") }
                        }
                    } } } },
                    "401": unauthorized, "404": not_found
                }
            }},
            "/api/v1/usage": { "get": {
                "summary": "the caller's usage and quota",
                "responses": {
                    "200": json_response("usage", schema_ref("Usage")),
                    "400": problem("the server runs without keys"),
                    "401": unauthorized
                }
            }},
            "/api/v1/admin/usage": { "get": {
                "summary": "every key's usage (admin keys)",
                "responses": {
                    "200": json_response("usage of every key", schema_ref("AdminUsage")),
                    "401": unauthorized,
                    "403": problem("not an admin key")
                }
            }}
        }
    });
    if let Some(map) = doc["paths"].as_object_mut() {
        map.extend(plugin_paths());
        map.extend(profile_paths());
        map.extend(background_paths(&sync));
    }
    doc
}

/// `/api/v1/remove-background` and rembg's `/api/remove`; `sync` is the answers of a
/// synchronous job endpoint.
fn background_paths(sync: &Map<String, Value>) -> Map<String, Value> {
    let flag = json!({ "type": "string", "enum": ["true", "false"] });
    let byte = json!({ "type": "integer", "minimum": 0, "maximum": 255 });
    let colour = json!({ "type": "string", "description": "#RRGGBB, #RRGGBBAA or r,g,b,a" });
    let form = json!({
        "type": "object",
        "required": ["image"],
        "properties": {
            "image": { "type": "string", "format": "binary", "description": "PNG, JPEG, WebP, BMP, TIFF or GIF" },
            "bg_image": { "type": "string", "format": "binary", "description": "an image to put behind the subject (scaled to cover)" },
            "mode": { "type": "string", "enum": ["rgba", "mask", "composite"], "description": "rgba: transparent background; mask: the alpha only; composite: over bg_color (white by default), bg_image or bg_blur" },
            "bg_color": colour,
            "bg_blur": { "type": "integer", "minimum": 0, "maximum": 500, "description": "blur the photo's own background by this radius" },
            "crop": { "type": "boolean" },
            "crop_margin": { "type": "integer", "minimum": 0, "maximum": 4096 },
            "post_process_mask": { "type": "boolean", "description": "rembg's ppm: a hard, clean-edged mask" },
            "alpha_matting": { "type": "boolean", "description": "refine the edge alpha against the photo (guided filter)" },
            "foreground_threshold": byte,
            "background_threshold": byte,
            "erode_size": { "type": "integer", "minimum": 0, "maximum": 255 },
            "decontaminate": { "type": "boolean", "description": "estimate the subject's colours at its edges (no halo)" },
            "keep_alpha": { "type": "boolean", "description": "keep the alpha channel of an opaque result (a colour background); default: written as RGB" },
            "format": { "type": "string", "enum": ["png", "webp", "jpeg"], "description": "png by default; webp is lossless; jpeg is flattened onto white" },
            "work_max_side": { "type": "integer", "minimum": 64, "maximum": 16384 },
            "callback_url": { "type": "string", "description": "an absolute http(s) URL" }
        }
    });
    let rembg_form = json!({
        "type": "object",
        "required": ["file"],
        "properties": {
            "file": { "type": "string", "format": "binary" },
            "model": { "type": "string", "enum": ["isnet-general-use", "dis_custom"] },
            "a": flag, "af": byte, "ab": byte,
            "ae": { "type": "integer", "minimum": 0, "maximum": 255 },
            "om": flag, "ppm": flag, "dc": flag,
            "vm": { "type": "string", "enum": ["false"], "description": "edge refinement with a matting network is not available" },
            "bgc": colour,
            "extras": { "type": "string", "description": "JSON, accepted and ignored" }
        }
    });
    let query = |name: &str, schema: &Value| json!({ "name": name, "in": "query", "required": false, "schema": schema });
    let mut answers = sync.clone();
    answers.insert(
        "503".into(),
        problem("the service is busy for this plan, or the background model is not installed"),
    );
    let json = json!({
        "/api/v1/remove-background": { "post": {
            "summary": "remove the background (ISNet) and wait for the image",
            "parameters": [idempotency_header()],
            "requestBody": { "required": true, "content": { "multipart/form-data": { "schema": form } } },
            "responses": answers.clone()
        }},
        "/api/remove": { "post": {
            "summary": "rembg's API: remove the background of `file`; options as form fields or query parameters",
            "parameters": [query("bgc", &colour), query("extras", &json!({ "type": "string" }))],
            "requestBody": { "required": true, "content": { "multipart/form-data": { "schema": rembg_form } } },
            "responses": answers
        }}
    });
    match json {
        Value::Object(map) => map,
        _ => Map::new(),
    }
}

/// `/api/v1/watermark-profiles...`.
fn profile_paths() -> Map<String, Value> {
    let profile = json!({
        "type": "object",
        "required": ["id", "kind", "origin", "width", "height", "mean_alpha", "url"],
        "properties": {
            "id": { "type": "string" },
            "kind": { "type": "string", "enum": ["learned", "logo"] },
            "frame": { "oneOf": [{ "type": "null" }, { "type": "object", "properties": { "width": { "type": "integer" }, "height": { "type": "integer" } } }] },
            "origin": { "type": "object", "properties": { "x": { "type": "integer" }, "y": { "type": "integer" } } },
            "width": { "type": "integer" }, "height": { "type": "integer" },
            "mean_alpha": { "type": "number" }, "url": { "type": "string" }
        }
    });
    let id =
        json!({ "name": "id", "in": "path", "required": true, "schema": { "type": "string" } });
    let unauthorized = || problem("missing, invalid or revoked API key");
    let missing = || problem("no such profile");
    let json = json!({
        "/api/v1/watermark-profiles": { "post": {
            "summary": "learn a watermark profile from 3 or more images that share one mark, or make one from a logo and an opacity",
            "requestBody": { "required": true, "content": { "multipart/form-data": { "schema": {
                "type": "object",
                "properties": {
                    "image": { "type": "array", "items": { "type": "string", "format": "binary" }, "description": "3 to 64 images of one size with the mark in one place" },
                    "logo": { "type": "string", "format": "binary", "description": "the mark: its alpha channel (or brightness) and colours" },
                    "opacity": { "type": "number", "exclusiveMinimum": 0, "maximum": 1 }
                }
            } } } },
            "responses": {
                "201": json_response("the profile", profile.clone()),
                "400": problem("too few images, images of different sizes, a logo without opacity, an unknown part"),
                "401": unauthorized(),
                "413": problem("an image over a limit"),
                "415": problem("not an image format unmark reads"),
                "422": problem("a corrupt image, or images that share no watermark")
            }
        }},
        "/api/v1/watermark-profiles/{id}": {
            "get": {
                "summary": "a profile",
                "parameters": [id.clone()],
                "responses": { "200": json_response("the profile", profile), "400": problem("a malformed id"), "401": unauthorized(), "404": missing() }
            },
            "delete": {
                "summary": "delete a profile",
                "parameters": [id],
                "responses": { "204": { "description": "deleted" }, "400": problem("a malformed id"), "401": unauthorized(), "404": missing() }
            }
        }
    });
    match json {
        Value::Object(map) => map,
        _ => Map::new(),
    }
}

/// `/api/v1/plugins...`.
fn plugin_paths() -> Map<String, Value> {
    let plugin = || json_response("the plugin", schema_ref("Plugin"));
    let list = |what: &str| {
        json_response(
            what,
            json!({ "type": "object", "properties": { what: { "type": "array", "items": schema_ref("Plugin") } } }),
        )
    };
    let path = |name: &str| json!({ "name": name, "in": "path", "required": true, "schema": { "type": "string" } });
    let query = |name: &str| json!({ "name": name, "in": "query", "required": false, "schema": { "type": "string" } });
    let upload = json!({
        "multipart/form-data": { "schema": {
            "type": "object", "required": ["name", "module"],
            "properties": {
                "name": { "type": "string", "description": "1 to 40 of [a-z0-9_-]" },
                "version": { "type": "string", "description": "default: the next whole number" },
                "module": { "type": "string", "format": "binary", "description": "the .wasm module" }
            }
        }},
        "application/wasm": { "schema": { "type": "string", "format": "binary" } }
    });
    let unauthorized = || problem("missing, invalid or revoked API key");
    let bad = || problem("a malformed name or version");
    let missing = || problem("no such plugin");
    let admin = || problem("not an admin key");
    let removed = || list("removed");
    let json = json!({
        "/api/v1/plugins": {
            "get": {
                "summary": "installed WASM plugins",
                "responses": { "200": list("plugins"), "401": unauthorized() }
            },
            "post": {
                "summary": "install a WASM plugin (admin keys): validated, then stored with its SHA-256",
                "parameters": [query("name"), query("version")],
                "requestBody": { "required": true, "content": upload },
                "responses": {
                    "200": plugin(), "201": plugin(),
                    "400": problem("a malformed request, name or version"),
                    "401": unauthorized(), "403": admin(),
                    "409": problem("this version is installed with another module"),
                    "413": problem("the module or body is over its limit"),
                    "415": problem("neither multipart/form-data nor application/wasm"),
                    "422": problem("the module is refused: not WebAssembly, a forbidden import, a broken contract")
                }
            }
        },
        "/api/v1/plugins/{name}": {
            "get": {
                "summary": "a plugin's versions",
                "parameters": [path("name")],
                "responses": { "200": list("plugins"), "400": bad(), "401": unauthorized(), "404": missing() }
            },
            "delete": {
                "summary": "remove every version of a plugin (admin keys)",
                "parameters": [path("name")],
                "responses": { "200": removed(), "400": bad(), "401": unauthorized(), "403": admin(), "404": missing() }
            }
        },
        "/api/v1/plugins/{name}/{version}": {
            "get": {
                "summary": "one version of a plugin",
                "parameters": [path("name"), path("version")],
                "responses": { "200": plugin(), "400": bad(), "401": unauthorized(), "404": missing() }
            },
            "delete": {
                "summary": "remove one version of a plugin (admin keys)",
                "parameters": [path("name"), path("version")],
                "responses": { "200": removed(), "400": bad(), "401": unauthorized(), "403": admin(), "404": missing() }
            }
        }
    });
    match json {
        Value::Object(map) => map,
        _ => Map::new(),
    }
}

/// `GET /api/v1/openapi.json`.
pub(crate) async fn serve() -> axum::Json<Value> {
    axum::Json(document())
}
