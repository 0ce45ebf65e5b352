"""The OpenAPI document of the HTTP API (served at /openapi.json; the suite fuzzes the app with it)."""

from __future__ import annotations

from typing import Any

from serve.files import FileStatus

__all__ = ["openapi"]


def _json(schema: str) -> dict[str, Any]:
    return {"application/json": {"schema": {"$ref": f"#/components/schemas/{schema}"}}}


def _error(description: str, headers: tuple[str, ...] = ()) -> dict[str, Any]:
    response: dict[str, Any] = {"description": description, "content": _json("Error")}
    if headers:
        response["headers"] = {h: {"$ref": f"#/components/headers/{h}"} for h in headers}
    return response


BYTES = {
    media: {"schema": {"type": "string", "format": "binary"}}
    for media in ("application/octet-stream", "text/csv", "text/tab-separated-values")
}
PATH = {"type": "string", "pattern": "^[A-Za-z0-9._-]{1,256}$"}
DCC = {"$ref": "#/components/schemas/Dcc"}  # the served DCCs (CFDB_DCCS), filled in by openapi()
DCC_PARAM = {"name": "dcc", "in": "path", "required": True, "schema": DCC}
LOCAL_ID_PARAM = {"name": "local_id", "in": "path", "required": True, "schema": PATH}
RANGE_PARAM = {"name": "Range", "in": "header", "required": False, "schema": {"type": "string"},
               "description": "One byte range: bytes=a-b, a- or -n (a multi-range gets the whole file)."}
RAW_PARAM = {"name": "raw", "in": "query", "required": False, "schema": {"type": "string", "enum": ["true", "false"]}}

STREAM_RESPONSES: dict[str, Any] = {
    "200": {"description": "The whole file.", "content": BYTES},
    "206": {"description": "One byte range (the end clamped to the file).", "content": BYTES,
            "headers": {"Content-Range": {"schema": {"type": "string"}}}},
    "400": _error("Unknown DCC, invalid path parameter, malformed Range or raw value."),
    "403": _error("A HuBMAP file that is not public."),
    "404": _error("Unknown file; HEAD on a miss; no index for this format."),
    "416": _error("The range starts at or past the end of the file.", ("Content-Range",)),
    "422": _error("The file cannot be preprocessed (no checksum, or a remembered permanent failure).",
                  ("Retry-After",)),
    "429": _error("Too many active preprocessing jobs for new work.", ("Retry-After",)),
    "501": _error("The file has no access URL."),
    "502": _error("The upstream repository failed, or its sidecar entry is malformed."),
    "503": _error("Preprocessing is off, the server is draining, or a backing service is down.", ("Retry-After",)),
    "504": _error("The upstream repository timed out."),
}


def _stream_operation(summary: str) -> dict[str, Any]:
    responses = {
        **STREAM_RESPONSES,
        "202": {"description": "A cache miss: preparation was requested; poll the job.",
                "content": _json("JobAccepted"),
                "headers": {"Location": {"$ref": "#/components/headers/Location"},
                            "Retry-After": {"$ref": "#/components/headers/Retry-After"}}},
    }
    return {"summary": summary, "parameters": [DCC_PARAM, LOCAL_ID_PARAM, RAW_PARAM, RANGE_PARAM], "responses": responses}


def _status_operation(summary: str) -> dict[str, Any]:
    return {
        "summary": summary,
        "parameters": [DCC_PARAM, LOCAL_ID_PARAM],
        "responses": {
            "200": {"description": "Readiness; never starts work.", "content": _json("Ready")},
            **{code: STREAM_RESPONSES[code] for code in ("400", "403", "404", "501", "502", "503")},
        },
    }


def openapi(dccs: tuple[str, ...]) -> dict[str, Any]:
    """The OpenAPI 3.0 document, for the served DCCs."""
    file_responses = {
        "200": {"description": "The file's state and, when ready, its artifact URLs.", "content": _json("File")},
        **{code: STREAM_RESPONSES[code] for code in ("400", "403", "404", "503")},
    }
    return {
        "openapi": "3.0.3",
        "info": {"title": "cfdb-assets", "version": "0.1.0",
                 "description": "Browser-ready, range-served artifacts for CFDE catalog files."},
        "paths": {
            "/health": {"get": {"summary": "Liveness", "responses": {"200": {"description": "OK", "content": _json("Health")}}}},
            "/data/{dcc}/{local_id}": {"get": _stream_operation("The sorted data artifact, or upstream bytes"),
                                       "head": _stream_operation("Headers of /data; never starts work")},
            "/index/{dcc}/{local_id}": {"get": _stream_operation("The index (.bai/.tbi/.csi) or a 4DN sidecar"),
                                        "head": _stream_operation("Headers of /index; never starts work")},
            "/data/{dcc}/{local_id}/status": {"get": _status_operation("Is /data ready?")},
            "/index/{dcc}/{local_id}/status": {"get": _status_operation("Is /index ready?")},
            "/jobs/{job_id}": {"get": {
                "summary": "A preparation job",
                "parameters": [{"name": "job_id", "in": "path", "required": True, "schema": {"type": "string"}}],
                "responses": {"200": {"description": "The job.", "content": _json("Job")},
                              "404": _error("Job not found.")},
            }},
            "/files": {"get": {
                "summary": "Catalog files with their state",
                "parameters": [
                    {"name": "dcc", "in": "query", "required": False, "schema": DCC},
                    {"name": "limit", "in": "query", "required": False, "schema": {"type": "integer", "minimum": 1, "maximum": 500}},
                    {"name": "cursor", "in": "query", "required": False, "schema": {"type": "string"}},
                ],
                "responses": {"200": {"description": "A page of files.", "content": _json("FileList")},
                              "400": STREAM_RESPONSES["400"], "503": STREAM_RESPONSES["503"]},
            }},
            "/files/{dcc}/{local_id}": {
                "get": {"summary": "One file's state (?prepare=true: as POST)",
                        "parameters": [DCC_PARAM, LOCAL_ID_PARAM,
                                       {"name": "prepare", "in": "query", "required": False,
                                        "schema": {"type": "string", "enum": ["true", "false"]}}],
                        "responses": {**file_responses,
                                      "202": {"description": "Preparation requested.", "content": _json("File")},
                                      "422": STREAM_RESPONSES["422"], "429": STREAM_RESPONSES["429"]}},
                "post": {"summary": "Request preparation without downloading", "parameters": [DCC_PARAM, LOCAL_ID_PARAM],
                         "responses": {**file_responses,
                                       "202": {"description": "Preparation requested.", "content": _json("File")},
                                       "422": STREAM_RESPONSES["422"], "429": STREAM_RESPONSES["429"]}},
            },
            "/files/{dcc}/{local_id}/contigs": {"get": {
                "summary": "A file's contigs with data, their lengths and the first record (for a viewer's "
                           "assembly and first region); read from a ready file's index, or a bigWig's header",
                "parameters": [DCC_PARAM, LOCAL_ID_PARAM],
                "responses": {
                    "200": {"description": "The contigs that have data, in file order.", "content": _json("Contigs")},
                    **{code: STREAM_RESPONSES[code] for code in ("400", "403", "501", "502", "503", "504")},
                    "404": _error("Unknown file; a file that is not ready; a format without contigs."),
                },
            }},
            "/artifacts/{cache_key}/{name}": {
                **{method: {
                    "summary": "An artifact by its content address (never 202)",
                    "parameters": [
                        {"name": "cache_key", "in": "path", "required": True, "schema": {"type": "string"}},
                        {"name": "name", "in": "path", "required": True, "schema": {"type": "string"}},
                        RANGE_PARAM,
                        {"name": "If-None-Match", "in": "header", "required": False, "schema": {"type": "string"}},
                        {"name": "If-Range", "in": "header", "required": False, "schema": {"type": "string"}},
                    ],
                    "responses": {
                        "200": STREAM_RESPONSES["200"], "206": STREAM_RESPONSES["206"],
                        "304": {"description": "Not modified (If-None-Match matched the ETag)."},
                        "307": {"description": "CFDB_S3_REDIRECT: the bytes are at a presigned S3 URL.",
                                "headers": {"Location": {"$ref": "#/components/headers/Location"}}},
                        "400": STREAM_RESPONSES["400"], "404": _error("No such ready artifact."),
                        "416": STREAM_RESPONSES["416"], "503": STREAM_RESPONSES["503"],
                    },
                } for method in ("get", "head")},
            },
        },
        "components": {
            "headers": {
                "Location": {"schema": {"type": "string"}, "description": "The job to poll, /jobs/{job_id}."},
                "Retry-After": {"schema": {"type": "string"}, "description": "Seconds to wait."},
                "Content-Range": {"schema": {"type": "string"}},
            },
            "schemas": {
                "Dcc": {"type": "string", "enum": list(dccs)},
                "Error": {"type": "object", "required": ["detail"], "properties": {"detail": {"type": "string"}}},
                "Health": {"type": "object", "required": ["status"], "properties": {
                    "status": {"type": "string"},
                    "catalog": {"type": "object", "nullable": True, "properties": {
                        "documents": {"type": "integer"},
                        "skipped": {"type": "object", "additionalProperties": {"type": "integer"}},
                        "skipped_examples": {"type": "array", "items": {"type": "string"}},
                        "reload_error": {"type": "string", "nullable": True},
                    }},
                }},
                "Ready": {"type": "object", "required": ["ready"], "properties": {"ready": {"type": "boolean"}}},
                "JobAccepted": {"type": "object", "required": ["job_id", "status"], "properties": {
                    "job_id": {"type": "string"}, "status": {"type": "string", "enum": ["pending", "running"]}}},
                "Job": {"type": "object", "required": [
                    "job_id", "status", "stages_done", "artifacts", "progress", "error", "superseded_by"],
                    "properties": {
                        "job_id": {"type": "string"},
                        "status": {"type": "string", "enum": ["pending", "running", "completed", "failed"]},
                        "stages_done": {"type": "array", "items": {"type": "string"}},
                        "artifacts": {"type": "object", "additionalProperties": {"type": "string"}},
                        "progress": {"type": "string", "nullable": True,
                                     "description": "What the build is doing now, while it is active."},
                        "error": {"type": "string", "nullable": True},
                        "superseded_by": {"type": "string", "nullable": True,
                                          "description": "The job that replaced this failed one."},
                        "worker": {"type": "object", "nullable": True,
                                   "description": "The run's ECS task and size (production only).",
                                   "additionalProperties": {"type": "string"}},
                        "cache_key": {"type": "string"},
                        "run_id": {"type": "string", "nullable": True},
                        "run_url": {"type": "string", "nullable": True},
                    }},
                "File": {"type": "object", "required": ["dcc", "local_id", "format", "family", "state"], "properties": {
                    "dcc": {"type": "string"}, "local_id": {"type": "string"},
                    "filename": {"type": "string", "nullable": True},
                    "size": {"type": "integer", "nullable": True, "description": "Bytes, as the catalog says."},
                    "format": {"type": "string"}, "family": {"type": "string"},
                    "state": {"type": "string", "enum": [status.value for status in FileStatus]},
                    "cache_key": {"type": "string", "nullable": True},
                    "data_url": {"type": "string", "nullable": True},
                    "index_url": {"type": "string", "nullable": True},
                    "index_type": {"type": "string", "nullable": True, "enum": ["bai", "tbi", "csi", None]},
                    "asset_url": {"type": "string", "description": "The file's partition in the Dagster UI "
                                  "(processed files only)."},
                }},
                "Contigs": {"type": "object", "required": ["contigs", "first"], "properties": {
                    "contigs": {"type": "array", "items": {
                        "type": "object", "required": ["name", "length", "length_declared", "records"],
                        "properties": {
                            "name": {"type": "string"},
                            "length": {"type": "integer", "description": "Declared by the file (BAM header, "
                                       "VCF ##contig, GFF3 ##sequence-region, bigWig), or else a bound of its "
                                       "data's end from the index."},
                            "length_declared": {"type": "boolean"},
                            "records": {"type": "integer", "nullable": True,
                                        "description": "As the index counts them (None when it does not)."},
                        }}},
                    "first": {"type": "object", "nullable": True,
                              "description": "The first record (0-based, half-open); None for bigWig.",
                              "required": ["contig", "start", "end"], "properties": {
                                  "contig": {"type": "string"}, "start": {"type": "integer"},
                                  "end": {"type": "integer"}}},
                }},
                "FileList": {"type": "object", "required": ["files", "next_cursor"], "properties": {
                    "files": {"type": "array", "items": {"$ref": "#/components/schemas/File"}},
                    "next_cursor": {"type": "string", "nullable": True},
                }},
            },
        },
    }
