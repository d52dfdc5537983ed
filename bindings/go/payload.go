package honker

import (
	"encoding/json"
	"strings"
)

// maxSafeDigits is 2^53: every language's JSON parser reads integers up to it exactly.
const maxSafeDigits = "9007199254740992"

func beyondSafe(num []byte) bool {
	d := strings.TrimLeft(strings.TrimPrefix(string(num), "-"), "0")
	return len(d) > len(maxSafeDigits) || (len(d) == len(maxSafeDigits) && d > maxSafeDigits)
}

// encodePayload turns a Go value into the JSON text the extension stores. json.RawMessage and
// []byte are taken as JSON text as they are. Values JSON cannot hold (NaN, channels, ...) and
// integers beyond 2^53 are refused with payload.not_json, before anything is written.
func encodePayload(v any) (string, error) {
	var b []byte
	switch p := v.(type) {
	case json.RawMessage:
		b = p
	case []byte:
		b = p
	default:
		var err error
		if b, err = json.Marshal(v); err != nil {
			return "", &Error{Code: ErrPayloadNotJSON.Code, Message: "payload cannot be encoded as JSON: " + err.Error(), Err: err}
		}
	}
	if err := checkNumbers(b); err != nil {
		return "", err
	}
	return string(b), nil
}

// checkNumbers refuses integers outside ±2^53 (readers in other languages would round them) in
// JSON text, scanning it once without decoding it. Malformed JSON is left to the extension.
func checkNumbers(b []byte) error {
	inStr := false
	for i := 0; i < len(b); i++ {
		c := b[i]
		if inStr {
			if c == '\\' {
				i++
			} else if c == '"' {
				inStr = false
			}
			continue
		}
		if c == '"' {
			inStr = true
			continue
		}
		if c != '-' && (c < '0' || c > '9') {
			continue
		}
		j, integer := i, true
		for j < len(b) {
			d := b[j]
			if d == '.' || d == 'e' || d == 'E' {
				integer = false
			} else if !(d == '-' || d == '+' || (d >= '0' && d <= '9')) {
				break
			}
			j++
		}
		if integer && j-i >= 16 && beyondSafe(b[i:j]) {
			return errorf(ErrPayloadNotJSON.Code, "integer %s is beyond 2^53, which not every reader can hold exactly", b[i:j])
		}
		i = j - 1
	}
	return nil
}

func encodeOptions(v any) (any, error) {
	if v == nil {
		return nil, nil
	}
	b, err := json.Marshal(v)
	if err != nil {
		return nil, errorf(ErrInvalidArgument.Code, "options: %v", err)
	}
	if string(b) == "{}" || string(b) == "null" {
		return nil, nil
	}
	return string(b), nil
}
