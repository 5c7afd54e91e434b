package pgwire

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/pgcertgate/pgcertgate/authz"
	"github.com/pgcertgate/pgcertgate/internal/pgerr"
)

// TestErrorMapping pins down which errors reach a client as themselves:
// only the backend's answer to the client's own login. A backend error
// from the proxy's own connections (its catalog lookups) must reach the
// client as the generic "cannot connect" FATAL, or as an internal error
// when nothing marked it, and never with the backend's text or its
// file/line/routine fields.
func TestErrorMapping(t *testing.T) {
	// What PostgreSQL 15 sends for the membership query when the client's
	// name is not valid UTF-8, and when the catalog role may not read
	// pg_auth_members, and when the catalog role does not exist.
	badEncoding := &pgconn.PgError{Severity: "ERROR", SeverityUnlocalized: "ERROR", Code: "22021",
		Message: `invalid byte sequence for encoding "UTF8": 0xff`, Where: "unnamed portal parameter $1",
		File: "mbutils.c", Line: 1798, Routine: "report_invalid_encoding"}
	denied := &pgconn.PgError{Severity: "ERROR", SeverityUnlocalized: "ERROR", Code: "42501",
		Message: "permission denied for table pg_auth_members", File: "aclchk.c", Line: 3650, Routine: "aclcheck_error"}
	noRole := &pgconn.PgError{Severity: "FATAL", SeverityUnlocalized: "FATAL", Code: "28000",
		Message: `role "pgcertgate_catalog" does not exist`, File: "miscinit.c", Line: 694, Routine: "InitializeSessionUserId"}
	// The client's own login, refused by the backend.
	noDB := &pgconn.PgError{Severity: "FATAL", SeverityUnlocalized: "FATAL", Code: "3D000",
		Message: `database "nosuchdb" does not exist`, File: "postinit.c", Line: 885, Routine: "InitPostgres"}

	unavailable := &pgproto3.ErrorResponse{Severity: "FATAL", SeverityUnlocalized: "FATAL", Code: "57P03",
		Message: "could not connect to the database server behind pgcertgate"}
	internal := &pgproto3.ErrorResponse{Severity: "FATAL", SeverityUnlocalized: "FATAL", Code: "XX000",
		Message: "internal error in pgcertgate"}

	for _, tc := range []struct {
		name   string
		err    error
		want   *pgproto3.ErrorResponse
		reason string
		// logged must appear in the log detail (and nowhere the client
		// sees it).
		logged string
	}{
		{
			name: "backend refuses the client's own login",
			err:  refusedByBackend(noDB),
			want: &pgproto3.ErrorResponse{Severity: "FATAL", SeverityUnlocalized: "FATAL", Code: "3D000",
				Message: `database "nosuchdb" does not exist`, File: "postinit.c", Line: 885, Routine: "InitPostgres"},
			reason: "backend_refused",
		},
		{
			name:   "membership query refused",
			err:    catalogFailed("evaluating pg_hba.conf", &authz.CatalogError{Op: "query", Err: badEncoding}),
			want:   unavailable,
			reason: "catalog_error",
			logged: "invalid byte sequence",
		},
		{
			name:   "catalog role may not read pg_auth_members",
			err:    catalogFailed("evaluating pg_ident.conf", fmt.Errorf("map m: %w", &authz.CatalogError{Op: "query", Err: denied})),
			want:   unavailable,
			reason: "catalog_error",
			logged: "permission denied for table pg_auth_members",
		},
		{
			name:   "catalog role does not exist",
			err:    catalogFailed("evaluating pg_hba.conf", &authz.CatalogError{Op: "connect", Err: fmt.Errorf("failed to connect: %w", noRole)}),
			want:   unavailable,
			reason: "catalog_error",
			logged: `role "pgcertgate_catalog" does not exist`,
		},
		{
			// Not marked as the client's own login: whatever produced
			// it, the generic path does not relay it.
			name:   "unmarked backend error",
			err:    fmt.Errorf("evaluating pg_hba.conf: %w", badEncoding),
			want:   internal,
			reason: "internal_error",
		},
		{
			name:   "bare backend error",
			err:    denied,
			want:   internal,
			reason: "internal_error",
		},
		{
			name:   "authentication deadline during a lookup",
			err:    fmt.Errorf("evaluating pg_hba.conf: %w", context.DeadlineExceeded),
			want:   internal,
			reason: "internal_error",
		},
		{
			name:   "pgcertgate's own error",
			err:    fatal(codeInvalidAuthorization, "hba_reject", "pg_hba.conf rejects connection"),
			want:   &pgproto3.ErrorResponse{Severity: "FATAL", SeverityUnlocalized: "FATAL", Code: "28000", Message: "pg_hba.conf rejects connection"},
			reason: "hba_reject",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := toErrorResponse(tc.err)
			if fmt.Sprintf("%+v", *got) != fmt.Sprintf("%+v", *tc.want) {
				t.Errorf("toErrorResponse:\n got  %+v\n want %+v", *got, *tc.want)
			}
			if r := reasonOf(tc.err); r != tc.reason {
				t.Errorf("reasonOf = %q, want %q", r, tc.reason)
			}
			if !owesReply(tc.err) {
				t.Errorf("owesReply = false, want true")
			}
			wire, _ := encodeError(tc.err)
			if tc.reason != "backend_refused" {
				for _, secret := range []string{"pg_auth_members", "permission denied", "pgcertgate_catalog", "mbutils", "aclchk", "miscinit", "invalid byte sequence"} {
					if bytes.Contains(wire, []byte(secret)) {
						t.Errorf("the client is sent %q: %q", secret, wire)
					}
				}
			}
			if tc.logged != "" {
				e, ok := errors.AsType[*Error](tc.err)
				if !ok || !strings.Contains(e.LogDetail, tc.logged) {
					t.Errorf("log detail %q does not carry %q", e.LogDetail, tc.logged)
				}
			}
		})
	}
}

// catalogFailed is the error authz returns when the membership oracle
// fails during a lookup.
func catalogFailed(what string, err error) error {
	return pgerr.BackendUnavailable("catalog_error", fmt.Errorf("%s: %w", what, err))
}

// TestNoticeKeepsFields: a notice of the client's own backend session
// (sent while it started) is relayed with every field.
func TestNoticeKeepsFields(t *testing.T) {
	n := &pgconn.Notice{Severity: "NOTICE", SeverityUnlocalized: "NOTICE", Code: "00000", Message: "hello",
		Where: "PL/pgSQL function f()", File: "pl_exec.c", Line: 3893, Routine: "exec_stmt_raise"}
	got := noticeToResponse(n)
	if got.Message != "hello" || got.Where != n.Where || got.File != n.File || got.Line != n.Line || got.Routine != n.Routine {
		t.Errorf("notice relayed as %+v", *got)
	}
}
