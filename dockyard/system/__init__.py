"""System-wide views: /info and /system/df."""
