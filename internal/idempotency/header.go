package idempotency

import (
	"fmt"
	"strings"
)

// MaxKeyLength is the longest Idempotency-Key accepted, in bytes of the
// unquoted value.
const MaxKeyLength = 255

// parseKey parses the values of the Idempotency-Key header field (as
// http.Header.Values returns them). The value is a Structured Field String
// (RFC 8941: "abc", with \" and \\ as the only escapes); a bare value of
// visible ASCII without quotes, commas, semicolons or backslashes is
// accepted too, since many clients send the key unquoted. The key is 1 to
// [MaxKeyLength] printable ASCII characters.
//
// ok is false when the header is absent. A header that is present but is
// not exactly one such value (empty, too long, control characters, an
// unterminated string, parameters, or several values) is an error whose
// text says what is wrong.
func parseKey(values []string) (key string, ok bool, err error) {
	if len(values) == 0 {
		return "", false, nil
	}
	if len(values) > 1 {
		return "", true, fmt.Errorf("must be sent once, not %d times", len(values))
	}
	v := strings.Trim(values[0], " \t")
	if v == "" {
		return "", true, fmt.Errorf("must not be empty")
	}
	if v[0] == '"' {
		key, err = parseString(v)
	} else {
		key, err = parseBare(v)
	}
	if err != nil {
		return "", true, err
	}
	return key, true, nil
}

// parseString parses an sf-string that must make up all of v.
func parseString(v string) (string, error) {
	var b strings.Builder
	for i := 1; i < len(v); i++ {
		c := v[i]
		switch {
		case c == '\\':
			i++
			if i == len(v) {
				return "", fmt.Errorf("ends inside an escape")
			}
			if v[i] != '"' && v[i] != '\\' {
				return "", fmt.Errorf("has an invalid escape \\%s (only \\\" and \\\\ are allowed)", printableByte(v[i]))
			}
			b.WriteByte(v[i])
		case c == '"':
			if rest := strings.TrimLeft(v[i+1:], " \t"); rest != "" {
				switch rest[0] {
				case ',':
					return "", fmt.Errorf("must be a single value, not a list")
				case ';':
					return "", fmt.Errorf("must not have parameters")
				}
				return "", fmt.Errorf("has unexpected characters after the closing quote")
			}
			return checkKey(b.String())
		case c < ' ' || c > '~':
			return "", fmt.Errorf("must contain only printable ASCII characters")
		default:
			b.WriteByte(c)
		}
		if b.Len() > MaxKeyLength {
			return "", fmt.Errorf("must be at most %d characters", MaxKeyLength)
		}
	}
	return "", fmt.Errorf("has no closing quote")
}

// parseBare accepts an unquoted key.
func parseBare(v string) (string, error) {
	for i := 0; i < len(v); i++ {
		switch c := v[i]; {
		case c == ',':
			return "", fmt.Errorf("must be a single value, not a list")
		case c == ';':
			return "", fmt.Errorf("must not have parameters")
		case c == '"' || c == '\\':
			return "", fmt.Errorf("must be a quoted string (\"key\") or a bare key without quotes or backslashes")
		case c <= ' ' || c > '~':
			return "", fmt.Errorf("must contain only printable ASCII characters (quote a key with spaces)")
		}
	}
	return checkKey(v)
}

func checkKey(k string) (string, error) {
	switch {
	case k == "":
		return "", fmt.Errorf("must not be empty")
	case len(k) > MaxKeyLength:
		return "", fmt.Errorf("must be at most %d characters", MaxKeyLength)
	}
	return k, nil
}

// printableByte shows c in an error message without echoing control bytes.
func printableByte(c byte) string {
	if c < ' ' || c > '~' {
		return fmt.Sprintf("x%02X", c)
	}
	return string(c)
}
