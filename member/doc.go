// Package member is the membership of a realm.
package member
