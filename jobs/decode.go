package jobs

import (
	"bytes"
	"encoding/json"
	"math"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"
)

// Decode parses a job message strictly and normalises it (see Normalize).
// Every error is a *RejectError naming the field: the body is not UTF-8, not
// JSON or not an object; a key is unknown (names match exactly, case
// included) or appears twice in one object; a value has the wrong type; a
// file has not exactly one of content / content_b64 / object; or the
// shorthand is mixed with steps. A null value counts as absent. Decode does
// not check values; call Validate for that.
func Decode(data []byte) (*Job, error) {
	if !utf8.Valid(data) {
		return nil, rejectf("", "job is not valid UTF-8")
	}
	var raw json.RawMessage
	if err := json.Unmarshal(data, &raw); err != nil {
		return nil, rejectf("", "job is not valid JSON: %v", err)
	}
	if raw = bytes.TrimSpace(raw); raw[0] != '{' {
		return nil, rejectf("", "job must be a JSON object")
	}
	var j Job
	if err := decodeStrict(raw, reflect.ValueOf(&j).Elem(), ""); err != nil {
		return nil, err
	}
	if err := j.Normalize(); err != nil {
		return nil, err
	}
	return &j, nil
}

// Envelope is what Peek can recover from a job message that may be invalid.
type Envelope struct {
	// ID is the body's id, "" if absent or not a string. It may be invalid.
	ID string
	// ReplyTo is the body's reply_to, "" if absent or not a string. It may
	// be invalid.
	ReplyTo string
	// Labels are the body's labels, nil if absent or not all strings.
	Labels map[string]string
}

// Peek leniently reads id, reply_to and labels from a job message, so that a
// worker can address and label the rejected result of a job Decode refused.
// It never fails; what it cannot read it leaves empty. Check the values with
// ValidID and ReplySubjectAllowed before using them.
func Peek(data []byte) Envelope {
	var top map[string]json.RawMessage
	var e Envelope
	if json.Unmarshal(data, &top) != nil {
		return e
	}
	_ = json.Unmarshal(top["id"], &e.ID)
	_ = json.Unmarshal(top["reply_to"], &e.ReplyTo)
	if json.Unmarshal(top["labels"], &e.Labels) != nil {
		e.Labels = nil
	}
	return e
}

// keyChecker is implemented by types whose rules depend on which JSON keys
// are present, not only on the decoded values. keys holds the object's keys
// whose value is not null. An error's Field is relative to the object.
type keyChecker interface {
	checkKeys(keys map[string]bool) *RejectError
}

// checkKeys rejects a job that mixes the shorthand with steps.
func (j *Job) checkKeys(keys map[string]bool) *RejectError {
	j.expiresSet = keys["expires_at"]
	if !keys["steps"] {
		return nil
	}
	for _, f := range shorthandFields {
		if keys[f] {
			return errMixed(f)
		}
	}
	return nil
}

// checkKeys requires exactly one of content, content_b64 and object.
func (f *File) checkKeys(keys map[string]bool) *RejectError {
	n := 0
	for _, k := range [...]string{"content", "content_b64", "object"} {
		if keys[k] {
			n++
		}
	}
	if n != 1 {
		return rejectf("", "needs exactly one of content, content_b64 and object, has %d", n)
	}
	return nil
}

// MaxListLen bounds every list and every object of names (env, labels)
// in a job (argv included: far above what exec takes).
const MaxListLen = 65536

var (
	unmarshalerType = reflect.TypeFor[json.Unmarshaler]()
	keyCheckerType  = reflect.TypeFor[keyChecker]()
	timeType        = reflect.TypeFor[time.Time]()
)

// decodeStrict decodes the valid JSON value data into v (settable) like
// encoding/json, but rejects unknown and repeated object keys (matched
// exactly) and reports every error as a *RejectError whose Field is the
// path of the value, like "steps[0].cmd[1]" or `labels["k"]`.
func decodeStrict(data []byte, v reflect.Value, field string) *RejectError {
	if v.CanAddr() && v.Addr().Type().Implements(unmarshalerType) {
		if err := v.Addr().Interface().(json.Unmarshaler).UnmarshalJSON(data); err != nil {
			if v.Type() == timeType {
				return rejectf(field, `must be an RFC 3339 time like "2006-01-02T15:04:05Z"`)
			}
			return rejectf(field, "%v", err)
		}
		return nil
	}
	if isNull(data) {
		v.SetZero() // null is absent, as in encoding/json
		return nil
	}
	switch v.Kind() {
	case reflect.Pointer:
		p := reflect.New(v.Type().Elem())
		if err := decodeStrict(data, p.Elem(), field); err != nil {
			return err
		}
		v.Set(p)
		return nil
	case reflect.Struct:
		return decodeStruct(data, v, field)
	case reflect.Slice:
		var elems []json.RawMessage
		if json.Unmarshal(data, &elems) != nil {
			return rejectf(field, "%s", typeReason(v.Type()))
		}
		if len(elems) > MaxListLen {
			// Before each element costs a value of its own: millions of
			// empty strings in a message took a second and most of a GB.
			return rejectf(field, "has %d elements, at most %d", len(elems), MaxListLen)
		}
		s := reflect.MakeSlice(v.Type(), len(elems), len(elems))
		for i, e := range elems {
			if err := decodeStrict(e, s.Index(i), field+"["+strconv.Itoa(i)+"]"); err != nil {
				return err
			}
		}
		v.Set(s)
		return nil
	case reflect.Map:
		if v.Type().Key().Kind() != reflect.String {
			panic("jobs: decodeStrict: map key of type " + v.Type().Key().String())
		}
		members, ok := objectMembers(data)
		if !ok {
			return rejectf(field, "%s", typeReason(v.Type()))
		}
		if len(members) > MaxListLen {
			return rejectf(field, "has %d members, at most %d", len(members), MaxListLen)
		}
		m := reflect.MakeMapWithSize(v.Type(), len(members))
		seen := make(map[string]bool, len(members))
		for _, mb := range members {
			kf := field + "[" + quote(mb.key) + "]"
			if seen[mb.key] {
				return rejectf(kf, "appears more than once")
			}
			seen[mb.key] = true
			if isNull(mb.value) {
				// A label or variable is a string: null is no value of
				// one (and not a way to unset a variable).
				return rejectf(kf, "%s, not null", typeReason(v.Type().Elem()))
			}
			e := reflect.New(v.Type().Elem()).Elem()
			if err := decodeStrict(mb.value, e, kf); err != nil {
				return err
			}
			m.SetMapIndex(reflect.ValueOf(mb.key).Convert(v.Type().Key()), e)
		}
		v.Set(m)
		return nil
	}
	if json.Unmarshal(data, v.Addr().Interface()) != nil && !setIntegral(data, v) {
		return rejectf(field, "%s", typeReason(v.Type()))
	}
	return nil
}

// setIntegral sets the integer v to the JSON number data when that number
// has no fractional part however it is written (2000.0, 2e3): JSON has one
// kind of number, and JSON Schema's "integer" takes these too, as do
// submitters whose language made the value a float.
func setIntegral(data []byte, v reflect.Value) bool {
	n, ok := integralNumber(data)
	switch {
	case !ok:
		return false
	case v.CanInt() && !v.OverflowInt(n):
		v.SetInt(n)
	case v.CanUint() && n >= 0 && !v.OverflowUint(uint64(n)):
		v.SetUint(uint64(n))
	default:
		return false
	}
	return true
}

// integralNumber returns the value of the JSON number b when it is a whole
// number, written as an integer or not, of magnitude at most 2^53 when
// written with a fraction or exponent (beyond, a float64 is not exact).
func integralNumber(b []byte) (int64, bool) {
	if len(b) == 0 || b[0] == '"' {
		return 0, false
	}
	var n json.Number
	if json.Unmarshal(b, &n) != nil {
		return 0, false
	}
	if i, err := n.Int64(); err == nil {
		return i, true
	}
	f, err := n.Float64()
	if err != nil || f != math.Trunc(f) || math.Abs(f) > 1<<53 {
		return 0, false
	}
	return int64(f), true
}

// decodeStruct decodes a JSON object into the struct v.
func decodeStruct(data []byte, v reflect.Value, field string) *RejectError {
	members, ok := objectMembers(data)
	if !ok {
		return rejectf(field, "%s", typeReason(v.Type()))
	}
	fields := jsonFields(v.Type())
	seen := make(map[string]bool, len(members))
	present := make(map[string]bool, len(members))
	for _, mb := range members {
		kf := joinField(field, mb.key)
		if _, ok := fields[mb.key]; !ok {
			return rejectf(kf, "unknown field")
		}
		if seen[mb.key] {
			return rejectf(kf, "appears more than once")
		}
		seen[mb.key] = true
		present[mb.key] = !isNull(mb.value)
	}
	if v.Addr().Type().Implements(keyCheckerType) {
		if err := v.Addr().Interface().(keyChecker).checkKeys(present); err != nil {
			return under(field, err)
		}
	}
	for _, mb := range members {
		f := fields[mb.key]
		fv := v.FieldByIndex(f.index)
		if err := decodeStrict(mb.value, fv, joinField(field, mb.key)); err != nil {
			return err
		}
		if f.nonEmpty && present[mb.key] && fv.Kind() == reflect.String && fv.Len() == 0 {
			// An empty id, image, network, … is not a value the worker
			// understands; absent (or null) means the default.
			return rejectf(joinField(field, mb.key), "must not be empty (leave it out for the default)")
		}
	}
	return nil
}

// member is one key and value of a JSON object.
type member struct {
	key   string
	value json.RawMessage
}

// objectMembers returns the members of the valid JSON value data in
// document order, repeated keys included, and false if data is not an
// object.
func objectMembers(data []byte) ([]member, bool) {
	dec := json.NewDecoder(bytes.NewReader(data))
	if t, err := dec.Token(); err != nil || t != json.Delim('{') {
		return nil, false
	}
	var ms []member
	for dec.More() {
		t, err := dec.Token()
		if err != nil {
			return nil, false
		}
		var m member
		m.key, _ = t.(string)
		if err := dec.Decode(&m.value); err != nil {
			return nil, false
		}
		ms = append(ms, m)
	}
	return ms, true
}

// isNull reports whether the valid JSON value data is null.
func isNull(data []byte) bool { return string(bytes.TrimSpace(data)) == "null" }

// fieldCache maps a struct type to its JSON field names and field indexes.
var fieldCache sync.Map // reflect.Type -> map[string]fieldInfo

// fieldInfo is what decoding needs of a struct field.
type fieldInfo struct {
	index []int
	// nonEmpty: the field's tag has job:"nonempty"; a present empty string
	// is rejected.
	nonEmpty bool
}

// jsonFields returns the JSON names of t's exported fields (from their json
// tags, else their Go names), mapped to their indexes.
func jsonFields(t reflect.Type) map[string]fieldInfo {
	if m, ok := fieldCache.Load(t); ok {
		return m.(map[string]fieldInfo)
	}
	m := make(map[string]fieldInfo)
	for _, f := range reflect.VisibleFields(t) {
		if !f.IsExported() || f.Anonymous {
			continue
		}
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		switch name {
		case "-":
			continue
		case "":
			name = f.Name
		}
		m[name] = fieldInfo{index: f.Index, nonEmpty: f.Tag.Get("job") == "nonempty"}
	}
	fieldCache.Store(t, m)
	return m
}

// typeReason says what JSON a value of type t must be.
func typeReason(t reflect.Type) string {
	switch t.Kind() {
	case reflect.String:
		return "must be a string"
	case reflect.Bool:
		return "must be true or false"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "must be an integer in range"
	case reflect.Float32, reflect.Float64:
		return "must be a number"
	case reflect.Slice:
		return "must be a list of " + kindName(t.Elem())
	case reflect.Map:
		return "must be an object of " + kindName(t.Elem())
	}
	return "must be an object"
}

// kindName names the JSON type of a Go type, plural, for error messages.
func kindName(t reflect.Type) string {
	switch t.Kind() {
	case reflect.String:
		return "strings"
	case reflect.Bool:
		return "booleans"
	case reflect.Slice:
		return "lists"
	case reflect.Map, reflect.Struct:
		return "objects"
	}
	return "numbers"
}
