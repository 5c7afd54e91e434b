package pgwire

import (
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"
)

// SQLSTATE codes pgcertgate sends itself. Each matches what PostgreSQL sends
// in the same situation.
const (
	codeProtocolViolation         = "08P01"
	codeConnectionFailure         = "08006"
	codeFeatureNotSupported       = "0A000"
	codeInvalidAuthorization      = "28000"
	codeInvalidParameterValue     = "22023"
	codeTooManyConnections        = "53300"
	codeConfigFileError           = "F0000"
	codeCannotConnectNow          = "57P03"
	codeAdminShutdown             = "57P01"
	severityFatal                 = "FATAL"
	reasonUnsupportedProtoVersion = "unsupported_protocol"
)

// Error is a PostgreSQL-style error that pgcertgate itself raises. The
// Message is exactly what the client sees; Reason is the stable audit-log
// code and never reaches the client; LogDetail is for the log only.
type Error struct {
	Severity string
	Code     string
	Message  string
	// Detail is sent to the client, where PostgreSQL sends an errdetail
	// (not an errdetail_log) for the same error.
	Detail string
	// Hint is sent to the client, as PostgreSQL does for some errors.
	Hint string
	// Reason is a stable machine-readable code for logs and metrics
	// (no_hba_match, hba_reject, no_client_cert, …).
	Reason string
	// LogDetail is what PostgreSQL would write to its server log and never
	// to the client (matched line, identity, map failure).
	LogDetail string
	// protocol2 marks an error for a client that asked for protocol 1.x
	// or 2.x: PostgreSQL answers those in the old format (see encode).
	protocol2 bool
}

func (e *Error) Error() string { return e.Severity + ": " + e.Message }

// fatal builds a FATAL Error.
func fatal(code, reason, format string, args ...any) *Error {
	return &Error{Severity: severityFatal, Code: code, Reason: reason, Message: fmt.Sprintf(format, args...)}
}

// toErrorResponse turns any error into the ErrorResponse the client gets.
// It is the only place that does so:
//   - a backend's own error (*pgconn.PgError) passes through unchanged, so a
//     client sees `database "x" does not exist` exactly as PostgreSQL words it;
//   - pgcertgate's *Error carries PostgreSQL's text for the same situation;
//   - anything else is an internal failure reported without its details,
//     which could reveal the backend's address or the proxy's layout.
func toErrorResponse(err error) *pgproto3.ErrorResponse {
	if pgErr, ok := errors.AsType[*pgconn.PgError](err); ok {
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

// encodeError is the bytes the client gets for err. A client speaking
// protocol 2 or older gets the pre-3.0 form PostgreSQL still sends for
// "unsupported frontend protocol": 'E', the text with a "FATAL:  " prefix
// and a newline, NUL-terminated, and no length word.
func encodeError(err error) ([]byte, *pgproto3.ErrorResponse) {
	msg := toErrorResponse(err)
	if e, ok := errors.AsType[*Error](err); ok && e.protocol2 {
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
	if _, ok := errors.AsType[*pgconn.PgError](err); ok {
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
