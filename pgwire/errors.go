package pgwire

import (
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/pgcertgate/pgcertgate/internal/pgerr"
)

// SQLSTATE codes pgcertgate sends itself (internal/pgerr).
const (
	codeProtocolViolation         = pgerr.CodeProtocolViolation
	codeFeatureNotSupported       = pgerr.CodeFeatureNotSupported
	codeInvalidAuthorization      = pgerr.CodeInvalidAuthorization
	codeInvalidParameterValue     = pgerr.CodeInvalidParameterValue
	codeTooManyConnections        = pgerr.CodeTooManyConnections
	severityFatal                 = pgerr.SeverityFatal
	reasonUnsupportedProtoVersion = "unsupported_protocol"
)

// Error is the error pgcertgate raises itself, PostgreSQL's text for the
// same situation; authz raises the same type.
type Error = pgerr.Error

// fatal builds a FATAL Error.
func fatal(code, reason, format string, args ...any) *Error {
	return pgerr.Fatal(code, reason, format, args...)
}

// backendRefused is a PostgreSQL error from the client's own backend
// connection, raised while the backend opened the client's session
// (unknown database, role not permitted to log in, too many connections).
// The backend would have sent it to this client had it connected
// directly, so it is relayed unchanged, source file and line included:
// it is the only backend error that is. A *pgconn.PgError from the
// proxy's own connections (catalog lookups, cancel, resetting a kept
// backend) concerns the proxy's role and the proxy's queries, must never
// reach a client that has not logged in, and is not one of these.
type backendRefused struct{ pg *pgconn.PgError }

// refusedByBackend marks pg as the backend's answer to the client's own
// login.
func refusedByBackend(pg *pgconn.PgError) error { return &backendRefused{pg: pg} }

func (e *backendRefused) Error() string { return e.pg.Error() }
func (e *backendRefused) Unwrap() error { return e.pg }

// toErrorResponse turns any error into the ErrorResponse the client gets.
// It is the only place that does so:
//   - the backend's refusal of the client's own login (*backendRefused)
//     passes through unchanged, so a client sees `database "x" does not
//     exist` exactly as PostgreSQL words it;
//   - pgcertgate's *Error carries PostgreSQL's text for the same situation;
//   - anything else, a *pgconn.PgError of the proxy's own connections
//     included, is an internal failure reported without its details,
//     which could reveal the backend's address, the proxy's layout or its
//     catalog role.
func toErrorResponse(err error) *pgproto3.ErrorResponse {
	if r, ok := errors.AsType[*backendRefused](err); ok {
		return pgErrorResponse(r.pg)
	}
	if e, ok := errors.AsType[*Error](err); ok {
		return &pgproto3.ErrorResponse{
			Severity:            e.Severity,
			SeverityUnlocalized: e.Severity,
			Code:                e.Code,
			Message:             e.Message,
			Detail:              e.Detail,
			Hint:                e.Hint,
		}
	}
	return &pgproto3.ErrorResponse{
		Severity:            severityFatal,
		SeverityUnlocalized: severityFatal,
		Code:                "XX000",
		Message:             "internal error in pgcertgate",
	}
}

// pgErrorResponse is pgErr as the backend sent it, every field kept. Only
// for what the client's own backend session sent: its login refusal and
// its notices.
func pgErrorResponse(pgErr *pgconn.PgError) *pgproto3.ErrorResponse {
	return &pgproto3.ErrorResponse{
		Severity:            pgErr.Severity,
		SeverityUnlocalized: pgErr.SeverityUnlocalized,
		Code:                pgErr.Code,
		Message:             pgErr.Message,
		Detail:              pgErr.Detail,
		Hint:                pgErr.Hint,
		Position:            pgErr.Position,
		InternalPosition:    pgErr.InternalPosition,
		InternalQuery:       pgErr.InternalQuery,
		Where:               pgErr.Where,
		SchemaName:          pgErr.SchemaName,
		TableName:           pgErr.TableName,
		ColumnName:          pgErr.ColumnName,
		DataTypeName:        pgErr.DataTypeName,
		ConstraintName:      pgErr.ConstraintName,
		File:                pgErr.File,
		Line:                pgErr.Line,
		Routine:             pgErr.Routine,
	}
}

// encodeError is the bytes the client gets for err. A client speaking
// protocol 2 or older gets the pre-3.0 form PostgreSQL still sends for
// "unsupported frontend protocol": 'E', the text with a "FATAL:  " prefix
// and a newline, NUL-terminated, and no length word.
func encodeError(err error) ([]byte, *pgproto3.ErrorResponse) {
	msg := toErrorResponse(err)
	if e, ok := errors.AsType[*Error](err); ok && e.Protocol2 {
		return fmt.Appendf([]byte{'E'}, "%s:  %s\n\x00", msg.Severity, msg.Message), msg
	}
	buf, encErr := msg.Encode(nil)
	if encErr != nil {
		return nil, msg
	}
	return buf, msg
}

// reasonOf returns the audit reason code of err.
func reasonOf(err error) string {
	if e, ok := errors.AsType[*Error](err); ok && e.Reason != "" {
		return e.Reason
	}
	if _, ok := errors.AsType[*backendRefused](err); ok {
		return "backend_refused"
	}
	return "internal_error"
}

// owesReply reports whether the client gets an ErrorResponse for err.
// PostgreSQL closes silently (COMMERROR) on malformed packets, TLS
// failures and cancel requests; pgcertgate marks those with errSilentClose
// or an *Error without a SQLSTATE. Everything else is owed a reply.
func owesReply(err error) bool {
	if errors.Is(err, errSilentClose) || errors.Is(err, errCancelRequest) {
		return false
	}
	if e, ok := errors.AsType[*Error](err); ok {
		return e.Code != ""
	}
	return true
}
