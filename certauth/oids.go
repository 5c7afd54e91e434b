package certauth

// oidShortName returns the short name OpenSSL's X509_NAME_print_ex prints
// for an attribute type (OBJ_nid2sn(OBJ_obj2nid(oid))), and false when
// OpenSSL does not know the OID, in which case it prints the dotted OID and
// dumps the value as #hex. The table is OpenSSL's whole built-in object
// table, not only the usual attribute names: an attribute typed with, say,
// the OID of sha256WithRSAEncryption prints as "RSA-SHA256=…".
func oidShortName(content []byte) (string, bool) {
	sn, ok := opensslObjects[oidText(content)]
	return sn, ok
}
