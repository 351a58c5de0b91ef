from django.urls import path

from account.accounts.apis import AccountDetailApi, DepositApi, EntryListApi

urlpatterns = [
    path("accounts/<uuid:customer_id>", AccountDetailApi.as_view(), name="account-detail"),
    path("accounts/<uuid:customer_id>/deposits", DepositApi.as_view(), name="account-deposits"),
    path("accounts/<uuid:customer_id>/entries", EntryListApi.as_view(), name="account-entries"),
]
