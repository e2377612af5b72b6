
•



10.0.0.1"‚
 ©¥Ø÷
req-1POST
x-stepup-risk-score0
x-device-idd-laptop(
x-forwarded-for203.0.113.7, 10.0.0.1

user-agentcurl/8®
x-jwt-payloadœeyJhY3IiOiJ1cm46c3RlcHVwOmFhbDEiLCJhbXIiOlsicHdkIl0sImF1dGhfdGltZSI6MTc5NTc3MDAwMCwiaXNzIjoiaHR0cHM6Ly9pZHAuZXhhbXBsZS5jb20iLCJyb2xlcyI6WyJzdXBwb3J0Il0sInNpZCI6InMtMSIsInN1YiI6ImFsaWNlIiwidGVuYW50IjoiYWNtZSIsInVzdWFsX2NvdW50cmllcyI6WyJERSIsIkZSIl0sInpvbmVpbmZvIjoiRXVyb3BlL0JlcmxpbiJ9""/v1/payments/p-1/refunds?amount=12*api.example.com2httpsRHTTP/1.1