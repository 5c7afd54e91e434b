package integration

import (
	"crypto/x509/pkix"
	"testing"

	"github.com/pgcertgate/pgcertgate/internal/testpki"
)

func TestIdentScratch(t *testing.T) {
	p := newPKI(t)
	der, _ := testpki.RawName(testpki.RDNs(testpki.UTF8(identOIDUnknown, "x"), testpki.UTF8(testpki.OIDCommonName, "alice"))...)
	l, err := p.root.NewClient(pkix.Name{}, testpki.WithRawSubject(der))
	if err != nil { t.Fatal(err) }
	p.clients["unk"] = l
	ider, _ := testpki.RawName(testpki.RDNs(testpki.UTF8(identOIDUnknown, "x"), testpki.UTF8(testpki.OIDCommonName, "odd CA"))...)
	ca, err := p.root.NewIntermediate(pkix.Name{}, testpki.WithRawSubject(ider))
	if err != nil { t.Fatal(err) }
	l2, err := ca.NewClient(pkix.Name{CommonName: "alice"})
	if err != nil { t.Fatal(err) }
	p.clients["unkissuer"] = l2
	w := newWorld(t, p, worldOptions{hba: "hostssl all all 127.0.0.1/32 cert\n", noCRL: true})
	identSetup(t, w, []string{"alice", "nologin"}, nil)
	w.cluster.Exec(t.Context(), "ALTER ROLE nologin NOLOGIN")
	for _, c := range []conn{
		{user: "alice", database: "postgres", cert: "unk"},
		{user: "alice", database: "nosuch", cert: "unk"},
		{user: "nosuch", database: "postgres", cert: "unk"},
		{user: "alice", database: "postgres", cert: "unkissuer"},
	} {
		t.Logf("%+v: pg=%s gate=%s", c, w.attempt(direct, c), w.attempt(proxy, c))
	}
}
