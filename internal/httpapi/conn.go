package httpapi

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"strconv"
)

// refusedHeaders is what net/http puts between the status line and the
// body of the answers it writes itself, on the raw connection, to a
// request it refuses before any handler runs (conn.serve in
// net/http/server.go): a malformed request line or header (400), headers
// over MaxHeaderBytes (431), an unsupported transfer coding (501) or HTTP
// version (505).
const refusedHeaders = "\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: close\r\n\r\n"

// refusedCodes are the codes of the answers net/http writes itself; an
// answer with another status passes through as net/http wrote it.
var refusedCodes = map[int]Code{
	http.StatusBadRequest:                  CodeInvalid,
	http.StatusRequestHeaderFieldsTooLarge: CodeHeadersTooLarge,
	http.StatusNotImplemented:              CodeNotImplemented,
	http.StatusHTTPVersionNotSupported:     CodeVersionNotSupported,
}

// problemListener hands out connections that turn net/http's own
// plain-text refusals into problems, so that every error a client of
// the API meets is application/problem+json. maxHeader is the server's
// MaxHeaderBytes, named in the 431 problem.
type problemListener struct {
	net.Listener
	maxHeader int
}

func (l problemListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &problemConn{Conn: c, maxHeader: l.maxHeader}, nil
}

// problemConn rewrites, on the way out, a refusal net/http writes itself
// into a problem; everything else passes through unchanged. net/http
// writes such a refusal in one Write, straight to the connection, and
// then closes it.
type problemConn struct {
	net.Conn
	maxHeader int
}

func (c *problemConn) Write(p []byte) (int, error) {
	b, ok := refusalProblem(p, c.maxHeader)
	if !ok {
		return c.Conn.Write(p)
	}
	if _, err := c.Conn.Write(b); err != nil {
		return 0, err
	}
	return len(p), nil
}

// CloseWrite lets net/http half-close the connection after a 431, as it
// does on a bare TCP connection, so that the client reads the answer
// before the connection is reset.
func (c *problemConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}

// refusalProblem returns the problem response for p when p is a whole
// refusal net/http wrote itself ("HTTP/1.1 400 Bad Request: malformed
// Host header" + refusedHeaders + body); ok is false for anything else,
// which includes every response a handler writes (they carry a Date).
func refusalProblem(p []byte, maxHeader int) (_ []byte, ok bool) {
	line, ok := bytes.CutPrefix(p, []byte("HTTP/1.1 "))
	if !ok {
		return nil, false
	}
	end := bytes.IndexByte(line, '\r')
	if end < 4 || line[3] != ' ' || !bytes.HasPrefix(line[end:], []byte(refusedHeaders)) {
		return nil, false
	}
	status, err := strconv.Atoi(string(line[:3]))
	code, known := refusedCodes[status]
	if err != nil || !known {
		return nil, false
	}
	// The reason net/http gives follows the status text, if any.
	_, reason, _ := bytes.Cut(line[4:end], []byte(": "))
	var detail string
	switch {
	case status == http.StatusRequestHeaderFieldsTooLarge:
		detail = fmt.Sprintf("the request line and headers are over the limit of %s", byteSize(int64(maxHeader)))
	case status == http.StatusNotImplemented:
		detail = "the Transfer-Encoding is not supported (only chunked is)"
	case len(reason) > 0:
		detail = "the request is malformed: " + string(reason)
	default:
		detail = "the request line or a header is malformed"
	}
	id := newRequestID()
	body, err := json.Marshal(newProblem(&Error{Code: code, Message: detail}, "", id))
	if err != nil {
		return nil, false
	}
	body = append(body, '\n')
	var b bytes.Buffer
	fmt.Fprintf(&b, "HTTP/1.1 %d %s\r\n", status, http.StatusText(status))
	fmt.Fprintf(&b, "Content-Type: application/problem+json\r\nX-Content-Type-Options: nosniff\r\n%s: %s\r\n", RequestIDHeader, id)
	fmt.Fprintf(&b, "Content-Length: %d\r\nConnection: close\r\n\r\n", len(body))
	b.Write(body)
	return b.Bytes(), true
}
