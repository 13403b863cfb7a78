package isolate

import (
	"crypto/rand"
	"encoding/hex"
)

func randomID() string {
	var b [6]byte
	_, _ = rand.Read(b[:])
	return "sb-" + hex.EncodeToString(b[:])
}
