package jobs

import _ "embed"

// JobSchema is the JSON Schema (draft 2020-12) of a job message. Do not
// modify the slice.
//
//go:embed schema/job.schema.json
var JobSchema []byte

// ResultSchema is the JSON Schema (draft 2020-12) of a result message. Do
// not modify the slice.
//
//go:embed schema/result.schema.json
var ResultSchema []byte
