package main

import (
	"fmt"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/sgload/sgload/webhook"
)

func tokenCommand() *cli.Command {
	return &cli.Command{
		Name:         "token",
		Usage:        "manage secret URL tokens for the webhook",
		OnUsageError: onUsageError,
		Subcommands: []*cli.Command{{
			Name:  "new",
			Usage: "print a fresh secret URL token and the Post URL to give SendGrid",
			Description: "To rotate without losing a POST: add the new token to SGLOAD_URL_TOKENS next to\n" +
				"the old one, restart serve, set the new Post URL in SendGrid, then drop the old token.",
			OnUsageError: onUsageError,
			Flags: []cli.Flag{
				&cli.StringFlag{Name: "base-url", Value: "https://sgload.example.com", EnvVars: []string{"SGLOAD_BASE_URL"},
					Usage: "public URL of sgload serve, as SendGrid reaches it"},
			},
			Action: func(c *cli.Context) error {
				tok := webhook.NewURLToken()
				base := strings.TrimRight(c.String("base-url"), "/")
				fmt.Fprintf(c.App.Writer, "token: %s\nurl:   %s/webhook/sendgrid/%s\n", tok, base, tok)
				return nil
			},
		}},
	}
}
