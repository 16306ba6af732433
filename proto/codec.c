/* proto: placeholder, being written. */
