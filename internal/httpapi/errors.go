package httpapi

import (
	"errors"
	"net/http"

	"github.com/ternmq/tern/internal/broker"
	"github.com/ternmq/tern/internal/httpauth"
)

// coreErrors is how the HTTP API and its WebSocket name the core's refusals: one table, so a
// refusal has the same stable code on every route and in every frame.
var coreErrors = []struct {
	err    error
	status int
	code   string
}{
	{broker.ErrTopicInvalid, http.StatusBadRequest, "topic_invalid"},
	{broker.ErrFilterInvalid, http.StatusBadRequest, "filter_invalid"},
	{broker.ErrNotAuthorized, http.StatusForbidden, "not_authorized"},
	{broker.ErrPayloadTooLarge, http.StatusRequestEntityTooLarge, "payload_too_large"},
	// Before ErrQuotaExceeded: a rate refusal wraps it.
	{broker.ErrRateLimited, http.StatusTooManyRequests, "rate_limited"},
	{broker.ErrQuotaExceeded, http.StatusTooManyRequests, "quota_exceeded"},
	{broker.ErrRetainNotSupported, http.StatusBadRequest, "retain_not_supported"},
	{broker.ErrNoResponders, http.StatusServiceUnavailable, "no_responders"},
	{broker.ErrStorage, http.StatusServiceUnavailable, "unavailable"},
	{broker.ErrServerShuttingDown, http.StatusServiceUnavailable, "unavailable"},
}

// errorCode is the HTTP status and code of a core error; anything unknown is a 500
// "internal_error".
func errorCode(err error) (int, string) {
	for _, e := range coreErrors {
		if errors.Is(err, e.err) {
			return e.status, e.code
		}
	}
	return http.StatusInternalServerError, "internal_error"
}

// fail answers a core error with its HTTP status and a stable code.
func fail(w http.ResponseWriter, err error) {
	status, code := errorCode(err)
	httpauth.WriteError(w, status, code, err.Error())
}
