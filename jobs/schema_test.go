package jobs

import (
	"encoding/json"
	"maps"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
)

// schemaDoc is a parsed JSON Schema.
type schemaDoc map[string]any

func parseSchema(t *testing.T, name string, data []byte) schemaDoc {
	t.Helper()
	var doc schemaDoc
	if err := json.Unmarshal(data, &doc); err != nil {
		t.Fatalf("%s is not valid JSON: %v", name, err)
	}
	if got := doc["$schema"]; got != "https://json-schema.org/draft/2020-12/schema" {
		t.Errorf("%s: $schema = %v, want draft 2020-12", name, got)
	}
	return doc
}

// resolve follows a local "$ref" ("#/$defs/name") from node.
func (d schemaDoc) resolve(t *testing.T, node map[string]any) map[string]any {
	t.Helper()
	ref, ok := node["$ref"].(string)
	if !ok {
		return node
	}
	name, ok := strings.CutPrefix(ref, "#/$defs/")
	defs, _ := d["$defs"].(map[string]any)
	def, _ := defs[name].(map[string]any)
	if !ok || def == nil {
		t.Fatalf("unresolvable $ref %q", ref)
	}
	return d.resolve(t, def)
}

// goFields returns the JSON names of a struct type's fields and their types.
func goFields(typ reflect.Type) map[string]reflect.Type {
	m := map[string]reflect.Type{}
	for _, f := range reflect.VisibleFields(typ) {
		if !f.IsExported() {
			continue
		}
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if name == "-" {
			continue
		}
		if name == "" {
			name = f.Name
		}
		m[name] = f.Type
	}
	return m
}

// leaf reports whether a type is marshalled as a JSON scalar of its own.
func leaf(typ reflect.Type) bool {
	return typ == reflect.TypeFor[time.Time]() || typ == reflect.TypeFor[FileMode]()
}

// checkSchema checks that node describes typ: the same property names at
// every level of structs, lists and maps.
func (d schemaDoc) checkSchema(t *testing.T, node map[string]any, typ reflect.Type, where string) {
	t.Helper()
	node = d.resolve(t, node)
	for typ.Kind() == reflect.Pointer {
		typ = typ.Elem()
	}
	if leaf(typ) {
		return
	}
	switch typ.Kind() {
	case reflect.Slice:
		items, ok := node["items"].(map[string]any)
		if !ok {
			t.Errorf("%s: schema has no items for %s", where, typ)
			return
		}
		d.checkSchema(t, items, typ.Elem(), where+"[]")
	case reflect.Map:
		vals, ok := node["additionalProperties"].(map[string]any)
		if !ok {
			t.Errorf("%s: schema has no additionalProperties for %s", where, typ)
			return
		}
		d.checkSchema(t, vals, typ.Elem(), where+"{}")
	case reflect.Struct:
		props, ok := node["properties"].(map[string]any)
		if !ok {
			t.Errorf("%s: schema has no properties for %s", where, typ)
			return
		}
		fields := goFields(typ)
		for name := range fields {
			if _, ok := props[name]; !ok {
				t.Errorf("%s: Go field %s.%s is not in the schema", where, typ.Name(), name)
			}
		}
		for name := range props {
			if _, ok := fields[name]; !ok {
				t.Errorf("%s: schema property %q is not a field of %s", where, name, typ.Name())
			}
		}
		if req, ok := node["required"].([]any); ok {
			for _, r := range req {
				if _, ok := props[r.(string)]; !ok {
					t.Errorf("%s: required %q is not a property", where, r)
				}
			}
		}
		for _, name := range slices.Sorted(maps.Keys(fields)) {
			if p, ok := props[name].(map[string]any); ok {
				d.checkSchema(t, p, fields[name], joinField(where, name))
			}
		}
	}
}

// enum returns the enum at a slash-separated path of property names.
func (d schemaDoc) enum(t *testing.T, path ...string) []string {
	t.Helper()
	node := map[string]any(d)
	for _, p := range path {
		node = d.resolve(t, node)
		if strings.HasPrefix(p, "$defs.") {
			node = d["$defs"].(map[string]any)[strings.TrimPrefix(p, "$defs.")].(map[string]any)
			continue
		}
		node = node["properties"].(map[string]any)[p].(map[string]any)
	}
	node = d.resolve(t, node)
	var out []string
	for _, v := range node["enum"].([]any) {
		out = append(out, v.(string))
	}
	return out
}

func TestJobSchema(t *testing.T) {
	doc := parseSchema(t, "job.schema.json", JobSchema)
	doc.checkSchema(t, doc, reflect.TypeFor[Job](), "job")
	if doc["additionalProperties"] != false {
		t.Error("job schema allows unknown properties")
	}
	for _, def := range []string{"step", "file", "limits"} {
		if doc["$defs"].(map[string]any)[def].(map[string]any)["additionalProperties"] != false {
			t.Errorf("$defs.%s allows unknown properties", def)
		}
	}
	checkEnum(t, "network", doc.enum(t, "network"), NetworkNone, NetworkEgress)
	checkEnum(t, "seccomp", doc.enum(t, "seccomp"), SeccompDefault, SeccompStrict)
	checkEnum(t, "compare", doc.enum(t, "compare"), CompareExact, CompareLines, CompareTokens)
	checkEnum(t, "steps[].compare", doc.enum(t, "$defs.step", "compare"), CompareExact, CompareLines, CompareTokens)
	// Every shorthand field is described, and described like the step's.
	props := doc["properties"].(map[string]any)
	for _, f := range shorthandFields {
		if _, ok := props[f]; !ok {
			t.Errorf("shorthand field %q not in the schema", f)
		}
	}
}

func TestResultSchema(t *testing.T) {
	doc := parseSchema(t, "result.schema.json", ResultSchema)
	doc.checkSchema(t, doc, reflect.TypeFor[Result](), "result")
	checkEnum(t, "status", doc.enum(t, "status"), append(stepStatuses[:], StatusRejected, StatusExpired)...)
	checkEnum(t, "steps[].status", doc.enum(t, "$defs.step_result", "status"), stepStatuses[:]...)

	// "required" is exactly what a zero result always marshals.
	zero, err := json.Marshal(Result{})
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]json.RawMessage
	_ = json.Unmarshal(zero, &m)
	var req []string
	for _, r := range doc["required"].([]any) {
		req = append(req, r.(string))
	}
	if got, want := slices.Sorted(maps.Keys(m)), slices.Sorted(slices.Values(req)); !slices.Equal(got, want) {
		t.Errorf("zero result has %q, schema requires %q", got, want)
	}
}

func checkEnum[T ~string](t *testing.T, where string, got []string, want ...T) {
	t.Helper()
	var w []string
	for _, v := range want {
		w = append(w, string(v))
	}
	if !slices.Equal(got, w) {
		t.Errorf("%s: schema enum %q, Go constants %q", where, got, w)
	}
}
