#!/usr/bin/env bash
echo "test media script: pending"
