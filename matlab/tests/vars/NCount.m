classdef NCount < scistack.BaseVariable
end
