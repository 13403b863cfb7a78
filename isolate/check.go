package isolate

// Feature is one kernel or host feature corral relies on, as Check found it.
type Feature struct {
	// Name is a short stable identifier, such as "userns" or "landlock".
	Name string `json:"name"`
	// OK reports whether the feature is present and usable.
	OK bool `json:"ok"`
	// Required is false for informational features: missing, they degrade
	// something (a test image, swap accounting) without stopping corral.
	Required bool `json:"required"`
	// Detail says what was found (a version, a count, the error of a probe).
	Detail string `json:"detail"`
	// Fix says how to get the feature when it is missing; empty when OK.
	Fix string `json:"fix,omitempty"`
}

// Missing returns the required features of fs that are not OK.
func Missing(fs []Feature) []Feature {
	var out []Feature
	for _, f := range fs {
		if f.Required && !f.OK {
			out = append(out, f)
		}
	}
	return out
}
