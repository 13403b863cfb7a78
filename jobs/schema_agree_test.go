package jobs

import (
	"bytes"
	"os"
	"testing"

	"github.com/santhosh-tekuri/jsonschema/v6"
)

// compileJobSchema compiles schema/job.schema.json with a JSON Schema
// 2020-12 validator, formats asserted.
func compileJobSchema(t *testing.T) *jsonschema.Schema {
	t.Helper()
	f, err := os.Open("schema/job.schema.json")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	doc, err := jsonschema.UnmarshalJSON(f)
	if err != nil {
		t.Fatal(err)
	}
	c := jsonschema.NewCompiler()
	c.AssertFormat()
	if err := c.AddResource("job.schema.json", doc); err != nil {
		t.Fatal(err)
	}
	s, err := c.Compile("job.schema.json")
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// schemaCannot lists the corpus's jobs on which the schema and the worker
// disagree because JSON Schema cannot say what the worker checks, with the
// reason. Any other disagreement fails: the schema a submitter validates
// against must accept what a worker accepts and reject what it rejects.
var schemaCannot = map[string]string{
	"id null":                 nullAbsent,
	"file null other":         nullAbsent,
	"nulls":                   nullAbsent,
	"duplicate key":           duplicateKeys,
	"duplicate step key":      duplicateKeys,
	"duplicate env key":       duplicateKeys,
	"duplicate label":         duplicateKeys,
	"escaped duplicate":       duplicateKeys,
	"invalid utf-8":           "a schema validates decoded JSON; the bytes' encoding is the decoder's",
	"collect bad glob":        globSyntax,
	"collect bad glob escape": globSyntax,
	"egress allow bad cidr":   "whether a string is a CIDR (or CIDR:port) is beyond a pattern worth keeping",
	"egress allow bad port":   "a port's range (1-65535) inside CIDR:port is beyond a pattern worth keeping",
	"labels too big":          "a schema bounds each string, not the sum of an object's keys and values",
}

const (
	nullAbsent    = "the worker reads null as absent (protocol.md); the schema, stricter, wants the value or nothing"
	duplicateKeys = "a schema sees the decoded object, where a repeated key is already gone"
	globSyntax    = "path.Match's syntax errors (an unclosed [, a trailing \\) are beyond a pattern"
)

func TestJobSchemaAgrees(t *testing.T) {
	s := compileJobSchema(t)
	for _, tc := range decodeCases() {
		inst, err := jsonschema.UnmarshalJSON(bytes.NewReader([]byte(tc.json)))
		if err != nil {
			// Not JSON at all: both reject it.
			if tc.reason == "" {
				t.Errorf("%s: the worker takes it, but it is not JSON: %v", tc.name, err)
			}
			continue
		}
		schemaOK := s.Validate(inst) == nil
		workerOK := tc.reason == ""
		if schemaOK == workerOK {
			if why, ok := schemaCannot[tc.name]; ok {
				t.Errorf("%s: listed as a disagreement (%s), but both agree now", tc.name, why)
			}
			continue
		}
		if _, ok := schemaCannot[tc.name]; ok {
			continue
		}
		t.Errorf("%s: schema valid %v, worker valid %v (%s %s): %s", tc.name, schemaOK, workerOK, tc.field, tc.reason, tc.json)
	}
}
