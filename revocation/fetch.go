package revocation

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"time"
)

// flight is one request shared by every caller that needs its answer
// while it runs.
type flight struct {
	done chan struct{}
	val  any
	err  error
}

// shared runs fn once for concurrent callers with the same key. fn runs
// in its own goroutine under the Checker's context with the given
// timeout, not under any caller's: a caller whose ctx ends stops waiting
// (getting ctx's error), and the request carries on for the others.
//
// cached, when set, is the caller's cache, looked at under the flights'
// lock before a new request starts. A caller that found the cache empty
// may get here just after the request it would have joined has ended,
// and fn stores its answer before its flight ends: the answer is there
// by now, and the caller takes it rather than asking again. A caller
// that wants a fresh answer whatever is cached passes nil.
func (c *Checker) shared(ctx context.Context, key string, timeout time.Duration, cached func() (any, bool), fn func(context.Context) (any, error)) (any, error) {
	c.fmu.Lock()
	f, ok := c.flights[key]
	if !ok && cached != nil {
		if v, hit := cached(); hit {
			c.fmu.Unlock()
			return v, nil
		}
	}
	if !ok {
		if c.closed {
			c.fmu.Unlock()
			return nil, errClosed
		}
		f = &flight{done: make(chan struct{})}
		c.flights[key] = f
		c.wg.Add(1)
		go func() {
			defer c.wg.Done()
			fctx, cancel := context.WithTimeout(c.base, timeout)
			f.val, f.err = fn(fctx)
			cancel()
			c.fmu.Lock()
			delete(c.flights, key)
			c.fmu.Unlock()
			close(f.done)
		}()
	}
	c.fmu.Unlock()
	select {
	case <-f.done:
		return f.val, f.err
	case <-ctx.Done():
		return nil, fmt.Errorf("gave up waiting: %w", ctx.Err())
	}
}

// httpError is a failed exchange: no answer from the server.
type httpError struct{ err error }

func (e *httpError) Error() string { return e.err.Error() }
func (e *httpError) Unwrap() error { return e.err }

// fetch makes one HTTP exchange with url (http only, no redirects) and
// returns at most max bytes of a 200 response's body. A body longer than
// max fails with errTooLarge as soon as max+1 bytes have arrived, so an
// endless body costs max bytes, not the whole timeout. Failures to get a
// response at all (refused scheme, connection, timeout, status, redirect)
// are *httpError.
func (c *Checker) fetch(ctx context.Context, method, rawURL string, body []byte, contentType string, max int64) ([]byte, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, &httpError{err}
	}
	if u.Scheme != "http" || u.Host == "" || u.User != nil {
		return nil, &httpError{fmt.Errorf("refusing to fetch %q: only plain http URLs without credentials are fetched", rawURL)}
	}
	select {
	case c.sem <- struct{}{}:
		defer func() { <-c.sem }()
	case <-ctx.Done():
		return nil, &httpError{errBusy}
	}
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, u.String(), rd)
	if err != nil {
		return nil, &httpError{err}
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := c.client.Do(req)
	if err != nil {
		return nil, &httpError{err}
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, &httpError{fmt.Errorf("HTTP status %s", resp.Status)}
	}
	if resp.ContentLength > max {
		return nil, fmt.Errorf("%w: Content-Length %d exceeds %d", errTooLarge, resp.ContentLength, max)
	}
	data, err := io.ReadAll(io.LimitReader(resp.Body, max+1))
	if err != nil {
		return nil, &httpError{err}
	}
	if int64(len(data)) > max {
		return nil, fmt.Errorf("%w: more than %d bytes", errTooLarge, max)
	}
	return data, nil
}

// isHTTPError reports whether err means the server gave no answer.
func isHTTPError(err error) bool {
	var he *httpError
	return errors.As(err, &he)
}
