#!/bin/sh
echo "release $RELEASE_ID"
